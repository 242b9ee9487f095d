"""The ImagePatch API as the LLM sees it (``image_patch_api.md``): package data.

Generated from the real class by ``python -m graft_vqa.planner.api_spec``; installed as
``graft_vqa._api_spec`` and read through :func:`graft_vqa.planner.prompts.api_spec_text`.
"""
