"""Docker sandboxes: hardened warm containers for tools that run model-written code.

``SandboxPool`` lends :class:`DockerSandbox` es (the :class:`~opd.envs.sandbox.Sandbox`
protocol, ``isolated = True``) to envs; see docs/sandboxes.md. Needs a running
Docker Engine and the images ``docker compose build`` makes.
"""

from opd.envs.docker.engine import EngineConfig, connect
from opd.envs.docker.hardening import Hardening, default_image
from opd.envs.docker.pool import PoolConfig, SandboxPool, SweptContainer, sweep_containers
from opd.envs.docker.sandbox import DockerSandbox

__all__ = [
    "DockerSandbox",
    "EngineConfig",
    "Hardening",
    "PoolConfig",
    "SandboxPool",
    "SweptContainer",
    "connect",
    "default_image",
    "sweep_containers",
]
