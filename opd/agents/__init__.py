"""Policies that act in tool environments, and the records of what they did.

Imports ``opd.envs`` and ``opd.trajectories``. Today: recording episodes into
trajectory records and replaying them; the student and teachers arrive with the
training-loop issue.
"""

from opd.agents.recording import env_options, expert_episode, step_record, writer_info
from opd.agents.replay import ReplayReport, StepDifference, replay_episode

__all__ = ["ReplayReport", "StepDifference", "env_options", "expert_episode", "replay_episode", "step_record", "writer_info"]
