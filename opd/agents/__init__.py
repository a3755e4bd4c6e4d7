"""Policies that act in tool environments, and the records of what they did.

Imports ``opd.envs`` and ``opd.trajectories``. The package itself exports only the
light pieces (recording episodes into trajectory records, replaying them); the
student (``policy``, ``vllm_policy``), the teachers (``teacher``, ``critic``,
``served_teacher``) and rollouts (``rollout``) are imported from their modules, so
that nothing here loads torch until a model is needed.
"""

from opd.agents.recording import env_options, expert_episode, step_record, writer_info
from opd.agents.replay import ReplayReport, StepDifference, replay_episode

__all__ = ["ReplayReport", "StepDifference", "env_options", "expert_episode", "replay_episode", "step_record", "writer_info"]
