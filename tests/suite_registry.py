"""Put the suite registry back as it was: for tests that import or register suites of their own.

A user suite registers itself in three process-wide places (opd's factories,
Gymnasium's registry, ``sys.modules``), and importing it puts its parent on
``sys.path``, where the entry-point search finds its ``dist-info`` again the next
time anything asks for a suite name. Restoring only some of them leaks the suite
into every later test in the same process, so every such test uses this.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym

from opd.envs import plugins, registry


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
            del sys.modules[name]
        sys.path[:] = path
        plugins._discovered = discovered
