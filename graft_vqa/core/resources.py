"""The repository's data folders (``prompts/``, ``api_spec/``) as installed package data.

Both ship inside the wheel as ``graft_vqa._prompts`` and ``graft_vqa._api_spec`` (pyproject's
``package-dir``), so no generic top-level name such as ``prompts`` is installed. From a source
checkout that was not installed, the folders are read where they are.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from graft_vqa.core.errors import GraftVQAError

DATA_PACKAGES = {"prompts": "graft_vqa._prompts", "api_spec": "graft_vqa._api_spec"}  # folder -> package
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository root of a source checkout


def data_path(folder: str) -> Path:
    """The directory of data folder ``folder`` (``"prompts"`` or ``"api_spec"``).

    Raises:
        GraftVQAError: unknown folder, or the package data is missing (a broken install).
    """
    if folder not in DATA_PACKAGES:
        raise GraftVQAError(f"unknown data folder {folder!r}; known: {', '.join(DATA_PACKAGES)}")
    try:
        return Path(str(importlib.resources.files(DATA_PACKAGES[folder])))
    except ModuleNotFoundError:
        source = _SOURCE_ROOT / folder
        if source.is_dir():
            return source
    raise GraftVQAError(f"the {folder}/ data of graft-vqa is missing: reinstall the package (pip install .)")
