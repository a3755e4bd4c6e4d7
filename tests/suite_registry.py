"""Put the suite registry back as it was: for tests that import or register suites of their own.

A user suite registers itself in three process-wide places (opd's factories,
Gymnasium's registry, ``sys.modules``), and importing it puts its parent on
``sys.path``, where the entry-point search finds its ``dist-info`` again the next
time anything asks for a suite name. Restoring only some of them leaks the suite
into every later test in the same process, so every such test uses this.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym

from opd.envs import plugins, registry

# Modules first imported inside the block from these stay imported: dropping an extension module such as torch
# from sys.modules and importing it again later crashes the process (a segfault in a later test).
_LIBRARIES = tuple({sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def _is_library(module: object) -> bool:
    return str(getattr(module, "__file__", None) or "").startswith(_LIBRARIES)


@contextmanager
def restored_suite_registry() -> Iterator[None]:
    factories, environments, modules, path = dict(registry._FACTORIES), dict(gym.registry), set(sys.modules), list(sys.path)
    discovered = plugins._discovered
    try:
        yield
    finally:
        registry._FACTORIES.clear()
        registry._FACTORIES.update(factories)
        gym.registry.clear()
        gym.registry.update(environments)
        for name in set(sys.modules) - modules:
            if not _is_library(sys.modules[name]):  # the test's own suite modules, wherever it put them
                del sys.modules[name]
        sys.path[:] = path
        plugins._discovered = discovered
