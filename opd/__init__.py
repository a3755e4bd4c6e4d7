"""opd: agent-level on-policy distillation.

A small student LLM learns multi-step tool use by acting in sandboxed Gymnasium
tool environments while a teacher grades the steps it actually took. The four
parts are subpackages: ``opd.envs`` (where agents act), ``opd.trajectories``
(the episode store), ``opd.agents`` (student and teachers) and ``opd.distill``
(losses and the training loop).
"""

from importlib.metadata import PackageNotFoundError, version

from opd.errors import (
    ConfigError,
    EpisodeStateError,
    IsolationRequiredError,
    MissingPrerequisiteError,
    OpdError,
    SandboxError,
    ToolError,
    UnknownNameError,
)

try:
    __version__ = version("opd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "EpisodeStateError",
    "IsolationRequiredError",
    "MissingPrerequisiteError",
    "OpdError",
    "SandboxError",
    "ToolError",
    "UnknownNameError",
    "__version__",
]
