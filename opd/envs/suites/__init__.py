"""Built-in tool suites; importing this package registers them."""

from opd.envs.suites import calculator, inventory

__all__ = ["calculator", "inventory"]
