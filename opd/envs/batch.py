"""Step many tool envs together, so a policy can generate for all of them in one batched forward pass.

Gymnasium's vector API auto-resets finished sub-envs, which would splice two
episodes into one record; an agent episode instead runs until it ends and then
waits for the rest of the batch. :class:`ToolEnvBatch` does exactly that:
finished envs drop out of the active set until the next ``reset``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from opd.envs.tool_env import ToolEnv
from opd.errors import ConfigError, SandboxError

__all__ = ["StepResult", "ToolEnvBatch"]


@dataclasses.dataclass(frozen=True)
class StepResult:
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class ToolEnvBatch:
    """A fixed set of envs reset and stepped together; each env's episode ends on its own."""

    def __init__(self, envs: Sequence[ToolEnv]) -> None:
        if not envs:
            raise ConfigError("A ToolEnvBatch needs at least one env.")
        self.envs = list(envs)
        self._active = [False] * len(self.envs)

    def __len__(self) -> int:
        return len(self.envs)

    @property
    def active(self) -> list[int]:
        """Indices of envs whose episode is still running."""
        return [i for i, running in enumerate(self._active) if running]

    def reset(self, seeds: Sequence[int | None], *, failures: dict[int, SandboxError] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Reset every env. With ``failures``, an env whose sandbox fails to reset is recorded there (index -> error)
        and left inactive instead of failing the whole batch; its entry is ``("", info)`` naming the task it drew."""
        if len(seeds) != len(self.envs):
            raise ConfigError(f"Expected {len(self.envs)} seeds, got {len(seeds)}.")
        self._active = [True] * len(self.envs)
        results = []
        for index, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            try:
                results.append(env.reset(seed=seed))
            except SandboxError as exc:
                if failures is None:
                    raise
                failures[index] = exc
                self._active[index] = False
                task_id = env.task.id if env.task is not None else ""
                results.append(
                    ("", {"task_id": task_id, "suite": env.suite.name, "turn": 0, "tools": env.suite.tool_schemas, "messages": []})
                )
        return results

    def resume(self) -> None:
        """Mark every env running without resetting it: for envs already brought to a stored step by replaying it."""
        self._active = [True] * len(self.envs)

    def step(self, actions: dict[int, str | bytes]) -> dict[int, StepResult]:
        """Step the envs named in ``actions`` (index -> action); all must be active."""
        finished = sorted(set(actions) - set(self.active))
        if finished:
            raise ConfigError(f"Envs {finished} are not active (episode ended or index out of range).")
        results = {}
        for index, action in actions.items():
            result = StepResult(*self.envs[index].step(action))
            self._active[index] = not result.done
            results[index] = result
        return results

    def abandon(self, index: int) -> None:
        """Stop stepping env ``index`` (e.g. its policy cannot continue); its episode ends unfinished."""
        self._active[index] = False

    def close(self) -> None:
        for env in self.envs:
            env.close()
