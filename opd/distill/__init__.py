"""Divergences, token/step/episode losses, the on-policy distillation loop and evaluation.

Imports ``opd.agents``, ``opd.envs`` and ``opd.trajectories``; arrives with the
training-loop issue.
"""
