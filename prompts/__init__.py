"""Prompt templates (``*.txt``), few-shot programs (``fewshot/*.py``) and vocabularies: package data.

Installed as ``graft_vqa._prompts``; read through :mod:`graft_vqa.planner.prompts`.
"""
