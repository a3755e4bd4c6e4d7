"""The demo's arms: off-policy SFT, plain OPD, and the OPD variants for a deterministic expert.

Every arm trains the same student start on the same budget of teacher-labelled
tokens; an OPD variant is plain OPD (token-level reverse KL on the student's own
rollouts) with the few settings the literature reports help when the expert has
one right action per state (docs/training.md, "Distilling from a deterministic
expert"):

* ``opd-stepw-divergence`` / ``opd-stepw-position``: per-step weights on the token
  loss, by the student's estimated divergence from the teacher or by the step's
  position (SOD's step reweighting);
* ``opd-forward-kl``: forward instead of reverse KL at the student's states: with
  a near one-hot teacher, cross-entropy to the teacher's action where the student
  went (DAgger's correction); in docs/benchmarks.md's stability run better than reverse
  KL with a weak teacher, worse and more often flagged with a strong one;
* ``opd-jsd``: JSD(0.5), the library's default divergence (the steadiest in
  docs/benchmarks.md's stability run), in place of the demo's reverse KL;
* ``opd-prefix``: GKD-style teacher-prefix mixing, the teacher playing an
  episode's first steps in half the updates;
* ``opd-curriculum``: a depth curriculum (TCOD): half of each update's episodes
  restart from stored teacher episodes, from their last step first and from step
  0 after half the expected updates. The teacher wrote those stored episodes, so
  their tokens are charged to the arm's budget up front;
* ``opd-forward-kl-curriculum``, ``opd-prefix-curriculum``: the curriculum with
  forward KL, or with teacher prefixes (the options combine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from opd.distill.losses import LossConfig
from opd.distill.offline import ReplayConfig
from opd.distill.prefix import TeacherPrefixConfig
from opd.distill.step_weights import StepWeights
from opd.distill.train import TrainResult
from opd.errors import ConfigError
from opd.trajectories import Episode, Run, TrajectoryStore

__all__ = [
    "ARMS",
    "ArmRecipe",
    "RestartSources",
    "arm_settings",
    "charge_sources",
    "check_arms",
    "curriculum_replay",
    "store_restart_sources",
]

OPD_LOSS = LossConfig(kind="token", divergence="reverse_kl")
FORWARD_KL_LOSS = LossConfig(kind="token", divergence="forward_kl")
JSD_LOSS = LossConfig(kind="token", divergence="jsd", divergence_params={"beta": 0.5})


@dataclasses.dataclass(frozen=True)
class ArmRecipe:
    label: str  # how tables and plots name the arm
    offpolicy: bool = False  # True: SFT on teacher-generated episodes; False: on-policy distillation
    loss: LossConfig = OPD_LOSS
    teacher_prefix: TeacherPrefixConfig | None = None  # GKD-style mixing within episodes
    restarts: bool = False  # a depth curriculum from stored teacher episodes (RestartSources)


ARMS: dict[str, ArmRecipe] = {
    "sft": ArmRecipe("off-policy SFT on teacher episodes", offpolicy=True, loss=LossConfig(kind="sft")),
    "opd": ArmRecipe("OPD, token-level reverse KL"),
    "opd-stepw-divergence": ArmRecipe(
        "OPD, steps weighted by divergence", loss=dataclasses.replace(OPD_LOSS, step_weights=StepWeights(by="divergence"))
    ),
    "opd-stepw-position": ArmRecipe(
        "OPD, later steps weighted 1.5x per step",
        loss=dataclasses.replace(OPD_LOSS, step_weights=StepWeights(by="position", position_decay=1.5)),
    ),
    "opd-forward-kl": ArmRecipe("OPD, token-level forward KL", loss=FORWARD_KL_LOSS),
    "opd-jsd": ArmRecipe("OPD, token-level JSD(0.5)", loss=JSD_LOSS),
    "opd-prefix": ArmRecipe("OPD, teacher plays 0-2 first steps in half the updates", teacher_prefix=TeacherPrefixConfig()),
    "opd-curriculum": ArmRecipe("OPD, half restarted from teacher episodes, late states first", restarts=True),
    "opd-forward-kl-curriculum": ArmRecipe("OPD, forward KL and the depth curriculum", loss=FORWARD_KL_LOSS, restarts=True),
    "opd-prefix-curriculum": ArmRecipe(
        "OPD, teacher prefixes and the depth curriculum together", teacher_prefix=TeacherPrefixConfig(), restarts=True
    ),
}


def check_arms(arms: Sequence[str]) -> None:
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms or len(set(arms)) != len(arms):
        raise ConfigError(f"arms must be distinct names among {', '.join(ARMS)}; got {list(arms)}.")


@dataclasses.dataclass(frozen=True)
class RestartSources:
    run_id: str  # the stored run that holds the teacher's episodes
    episodes: int
    teacher_tokens: int  # tokens the teacher wrote in them: charged to the arm's budget

    @property
    def mean_tokens(self) -> float:
        return self.teacher_tokens / max(self.episodes, 1)


def store_restart_sources(store_path: str, name: str, play: Callable[[str], list[Episode]]) -> RestartSources:
    """Store the teacher episodes ``play(run_id)`` returns, under a new run named ``name``, for restarts."""
    with TrajectoryStore(store_path) as store:
        run = store.add_run(Run(name=name))
        episodes = play(run.id)
        store.write_episodes(episodes)
    return RestartSources(run.id, len(episodes), sum(int(e.policy_mask.sum()) for e in episodes))


def curriculum_replay(sources: RestartSources, budget: int, episodes_per_update: int) -> ReplayConfig:
    """Half of each update restarted from ``sources``; the start reaches step 0 after about half of ``budget``'s updates."""
    expected_updates = budget / max(episodes_per_update * sources.mean_tokens, 1.0)
    return ReplayConfig(runs=(sources.run_id,), ratio=0.5, mode="restart", curriculum_updates=max(1, round(expected_updates / 2)))


def arm_settings(recipe: ArmRecipe, replay: ReplayConfig | None) -> dict[str, Any]:
    """The TrainConfig settings an arm adds to the demo's shared ones."""
    return {"loss": recipe.loss, "teacher_prefix": recipe.teacher_prefix, "replay": replay, "offpolicy_fraction": float(recipe.offpolicy)}


def charge_sources(result: TrainResult, sources: RestartSources | None) -> TrainResult:
    """``result`` with the stored teacher episodes' tokens added to its labelled tokens, also along its curve."""
    if sources is None:
        return result
    curve = tuple((update, tokens + sources.teacher_tokens, wall, success) for update, tokens, wall, success in result.curve)
    return dataclasses.replace(result, labelled_tokens=result.labelled_tokens + sources.teacher_tokens, curve=curve)
