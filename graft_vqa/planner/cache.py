"""Programs cached on disk by (normalised question, planner id, prompt version).

One JSON file per key, written atomically, so evaluations and restarts reuse programs and two
processes sharing a folder never read half a file. A corrupt or invalid entry is a miss.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from graft_vqa.core.errors import ProgramError
from graft_vqa.planner.extract import validate_program
from graft_vqa.planner.program import Program, normalise_question

log = logging.getLogger(__name__)


class ProgramCache:
    """A folder of cached programs."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(question: str, planner_id: str, prompt_version: str) -> str:
        """The cache key: a hash of the normalised question, planner id and prompt version."""
        payload = json.dumps([normalise_question(question), planner_id, prompt_version])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]

    def _path(self, question: str, planner_id: str, prompt_version: str) -> Path:
        return self.directory / f"{self.key(question, planner_id, prompt_version)}.json"

    def get(self, question: str, planner_id: str, prompt_version: str) -> Program | None:
        """Return the cached program, or None on a miss (absent, unreadable or no longer valid)."""
        path = self._path(question, planner_id, prompt_version)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            program = Program(source=data["source"], planner=data["planner"],
                              question=question, meta=dict(data.get("meta", {})))
            validate_program(program.source)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ProgramError) as exc:
            log.warning("Ignoring unusable cached program %s (%s); it will be planned again.", path, exc)
            return None
        program.meta["cached"] = True
        return program

    def put(self, program: Program, planner_id: str, prompt_version: str) -> Path:
        """Store ``program`` under its question; return the file written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(program.question, planner_id, prompt_version)
        data = asdict(program)
        data["meta"] = {k: v for k, v in program.meta.items() if k != "cached"}
        data["key"] = {"question": normalise_question(program.question), "planner": planner_id,
                       "prompt_version": prompt_version}
        handle, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=1, default=str)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
