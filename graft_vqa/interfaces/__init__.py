"""Interfaces: the ``graft-vqa`` command line, the Gradio app and the benchmark evaluation.

The top layer: it may import the agent, ``graft_models`` and the foundations; nothing imports it
(import-linter checks it).
"""
