"""Per-session state, UI settings and the engines they select.

Each browser session holds its own :class:`SessionState` (its tile, its output folder); engines are
shared per settings combination through an :class:`EnginePool`, each used under its own lock, so
models load once while sessions never see each other's tiles or answers.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from graft_vqa.config import EngineConfig, FindConfig
from graft_vqa.core.lru import LRU

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UISettings:
    """The settings a user can change in the app; one engine per distinct combination."""

    planner: str = "rules"  # "rules" (offline) or "openai" (OpenAI-compatible endpoint)
    base_url: str = ""  # OpenAI-compatible endpoint; "" means $OPENAI_BASE_URL
    model: str = ""  # LLM name; "" means $GRAFT_VQA_MODEL or the planner's default
    api_key: str = ""  # API key; "" means $OPENAI_API_KEY (local servers accept any)
    threshold: float = FindConfig.threshold  # find's cosine score threshold (FindConfig's default)
    refine: str = FindConfig.refine  # "sam": refine instances with SAM; "none": keep the components
    gsd_m: float | None = None  # ground sample distance for images without georeferencing
    thresholds: str = ""  # thresholds.json from `graft-vqa calibrate` (overrides the threshold); "" for none


EngineFactory = Callable[[UISettings], Any]  # settings -> an object with .ask(image, question) -> Answer


def default_engine_factory(base: EngineConfig | None = None) -> EngineFactory:
    """A factory building real :class:`~graft_vqa.engine.Engine` objects from ``base`` and the UI settings."""
    base = base or EngineConfig()

    def factory(settings: UISettings) -> Any:
        from graft_vqa.engine import Engine

        find = dataclasses.replace(base.find, threshold=settings.threshold,
                                   refine=settings.refine, thresholds=settings.thresholds or None)
        config = dataclasses.replace(base, find=find, gsd_m=settings.gsd_m or base.gsd_m)
        planner = None
        if settings.planner == "openai":
            from graft_vqa.planner import OpenAIPlanner

            # one quick retry: a person is waiting, and the chat says what to fix when the server is down
            planner = OpenAIPlanner(base_url=settings.base_url or None, model=settings.model or None,
                                    api_key=settings.api_key or ("not-needed" if settings.base_url else None),
                                    max_retries=1, backoff_s=0.5)
        return Engine(planner=planner, config=config)

    return factory


class EnginePool:
    """Engines by settings (least recently used dropped beyond ``max_engines``), each with a lock."""

    def __init__(self, factory: EngineFactory, max_engines: int = 4) -> None:
        self.factory = factory
        self.max_engines = max_engines  # distinct settings combinations kept alive
        self._engines: LRU[UISettings, tuple[Any, threading.Lock]] = LRU(max_items=max_engines)
        self._lock = threading.Lock()

    def get(self, settings: UISettings) -> tuple[Any, threading.Lock]:
        """The engine for ``settings`` and the lock to hold while using it (built on first use)."""
        with self._lock:
            return self._engines.get_or_put(settings, lambda: (self.factory(settings), threading.Lock()))

    def __len__(self) -> int:
        return len(self._engines)


@dataclass
class SessionState:
    """What one browser session owns: its tile and the folder of its overlays and GeoJSON files."""

    tile_path: str | None = None  # the uploaded file the engine reads
    tile_name: str = ""  # the file name the user uploaded
    rgb: np.ndarray | None = None  # the tile's RGB preview (decimated for large rasters), drawn under the detections
    tile_size: tuple[int, int] | None = None  # (height, width) of the raster: the pixels detections are given in
    scene: bool = False  # the raster is above scene_pixels: answered window by window
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="graft_vqa_ui_")))
    questions: int = 0  # questions asked so far (numbers the output files)
    answering: bool = False  # a question is being answered: another one waits in the box until it is done

    @classmethod
    def create(cls, root: str | Path | None = None) -> "SessionState":
        """A new session whose output folder lies under ``root`` (``None``: the system temp folder)."""
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        return cls(workdir=Path(tempfile.mkdtemp(prefix="graft_vqa_ui_", dir=root)))

    def next_path(self, stem: str, suffix: str) -> Path:
        """A fresh file path in this session's folder, e.g. ``overlay_3.png``."""
        return self.workdir / f"{stem}_{self.questions}{suffix}"

    def close(self) -> None:
        """Delete this session's output folder."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def delete_session(state: Any) -> None:
    """``gr.State`` delete callback: removes the session's files when the browser tab goes away."""
    if isinstance(state, SessionState):
        log.debug("closing session folder %s", state.workdir)
        state.close()
