"""The trajectory store: episode records, their schema, replay and inspection.

A leaf of the architecture (no torch, no docker); the store itself arrives with
the trajectory-store issue.
"""
