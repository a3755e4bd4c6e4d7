"""What is left running in a sandbox: shared by the Docker sandbox and hostile-input tests."""

from __future__ import annotations

from opd.envs import ExecLimits, Sandbox

# Names of the sandbox user's live (not zombie) processes other than the one asking.
_PROCESSES = """
import os
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) != os.getpid() and os.stat('/proc/' + pid).st_uid == os.getuid():
        stat = open('/proc/%s/stat' % pid).read()
        if stat.rsplit(')', 1)[1].split()[0] != 'Z':
            print(stat.split('(')[1].split(')')[0])
"""


def live_processes(sandbox: Sandbox, limits: ExecLimits) -> list[str]:
    """Process names of the sandbox user; a clean sandbox shows only the supervisor's child, ``python3``."""
    return sandbox.exec(["python3", "-c", _PROCESSES], limits).output.split()
