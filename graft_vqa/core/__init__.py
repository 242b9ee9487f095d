"""Foundations shared by every layer: the error hierarchy, tiles and georeferencing, small utilities.

Nothing here imports ``graft_models``, the agent or the interfaces (import-linter checks it), so the
training library can use tiles and errors without the agent.
"""
