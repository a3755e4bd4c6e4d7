"""The opd error hierarchy.

Every error opd raises derives from :class:`OpdError`, so callers can catch
everything from the framework in one place. Where an error replaces a standard
library exception, it also inherits that type, so ``except ValueError`` keeps
working for code that does not know about opd.

Errors a *model* causes (a malformed tool call, a wrong argument) are not
exceptions: they become observations and the episode goes on. The classes here
are for the caller's mistakes and for infrastructure failures.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OpdError(Exception):
    """Base class of every error raised by opd."""


class ConfigError(OpdError, ValueError):
    """A configuration value or argument is invalid."""


class UnknownNameError(OpdError, KeyError):
    """A name looked up in a registry does not exist.

    The message names the registry, lists what exists and suggests the close
    match for a typo.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        available = ", ".join(repr(k) for k in known) or "none"
        self.name = name
        self.message = f"Unknown {kind} {name!r}.{hint} Available: {available}."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class EpisodeStateError(OpdError, RuntimeError):
    """An environment was used out of order (e.g. ``step`` after the episode ended)."""


class SandboxError(OpdError, RuntimeError):
    """The sandbox itself failed (not the tool or the model).

    An infrastructure failure marks the episode failed; it is never shown to
    the model as an observation.
    """


class IsolationRequiredError(ConfigError):
    """A tool suite that runs untrusted code was given a sandbox that does not isolate."""


class MissingPrerequisiteError(OpdError, RuntimeError):
    """Something opd needs is not installed or not running; the message says how to get it."""


class ToolError(OpdError):
    """Raised *inside a tool* for a failure the model caused.

    The environment turns it into an error observation for the model and the
    episode continues, e.g. ``raise ToolError("division by zero")``.
    """


class StoreError(OpdError):
    """The trajectory store cannot be opened or used as asked."""


class NotInStoreError(StoreError, KeyError):
    """The store holds no run or episode with the given id (or the id prefix is ambiguous)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No store exists at the given location (and creating one was not asked for)."""


class NotAStoreError(StoreError, ValueError):
    """The file is not SQLite, is corrupt, or is a database that opd did not write."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer opd whose schema this version does not know."""
