"""Built-in tool suites; importing this package registers them.

``python`` and ``files`` run model-written code and ``logs`` runs every call in
its container: they require an isolating sandbox (``opd.envs.docker``); the
others run on the local backend.
"""

from opd.envs.suites import calculator, files, inventory, logs, python

__all__ = ["calculator", "files", "inventory", "logs", "python"]
