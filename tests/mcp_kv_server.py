"""A small stateful MCP server for the tests, written with the official SDK: a key-value store that lives as long as the process.

Run as ``python mcp_kv_server.py`` (stdio) or ``python mcp_kv_server.py http PORT``
(streamable HTTP on 127.0.0.1).
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("kv")
values: dict[str, int] = {}


@server.tool()
def put(key: str, value: int) -> str:
    """Store an integer under a key, replacing what was there.

    Args:
        key: The key, e.g. "apples".
        value: The integer to store.
    """
    values[key] = value
    return f"stored {key}"


@server.tool()
def get(key: str) -> int:
    """Read the integer stored under a key.

    Args:
        key: The key to read.
    """
    if key not in values:
        raise ToolError(f"no value under {key!r}")
    return values[key]


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
