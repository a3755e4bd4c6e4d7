"""Policies that act in tool environments: the student and its teachers.

Imports ``opd.envs`` and ``opd.trajectories``; the student, the white-box and
black-box teachers and the episode runner arrive with the training-loop issues.
"""
