"""Built-in tool suites; importing this package registers them.

``python`` and ``files`` run model-written code and require an isolating
sandbox (``opd.envs.docker``); the others run on the local backend.
"""

from opd.envs.suites import calculator, files, inventory, python

__all__ = ["calculator", "files", "inventory", "python"]
