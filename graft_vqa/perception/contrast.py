"""Contrast mode: a pixel's score for a query becomes its probability against a background vocabulary.

For each pixel, ``p(q) = softmax(scale * [s_q, s_b1, ..., s_bB])[0]`` where ``s`` are the scorer's
scores (GRAFT cosines) of the query and of the background prompts, and ``scale`` is CLIP's logit
scale (100). Cosines are only comparable between queries at one pixel, not between concepts, so an
absolute cut means different things for "road" and "forest"; a probability against the same
background means the same for every concept. Background prompts that share a word with the query are
left out for that query. The vocabulary is ``prompts/background.txt`` (package data), documented there.

:class:`ContrastScorer` wraps ANY scorer (``score_maps(tile, queries)``) and is itself a scorer;
:class:`ContrastSource` wraps a map source (a whole tile, or a scene on its cell grid) the same way.
Both score the queries and the background in one call and apply :func:`contrast_maps`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from graft_vqa.config import CLIP_LOGIT_SCALE
from graft_vqa.core.errors import ConfigError
from graft_vqa.core.lru import LRU
from graft_vqa.core.resources import data_path

BACKGROUND_FILE = "background.txt"  # in prompts/
_WORD = re.compile(r"[a-z0-9]+")


def load_vocabulary(path: str | Path | None = None) -> tuple[str, ...]:
    """The background prompts of ``path`` (default: the packaged ``prompts/background.txt``): one per
    line, ``#`` comments and blank lines skipped, duplicates dropped.

    Raises:
        ConfigError: the file is missing, unreadable or lists no prompt.
    """
    file = Path(path) if path is not None else data_path("prompts") / BACKGROUND_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the contrast vocabulary {file} ({type(exc).__name__}); pass a text file "
                          "with one background prompt per line (--contrast-vocabulary)") from None
    prompts = [line.strip() for line in text.splitlines()]
    vocabulary = tuple(dict.fromkeys(p for p in prompts if p and not p.startswith("#")))
    if not vocabulary:
        raise ConfigError(f"the contrast vocabulary {file} lists no prompt; write one background prompt per line")
    return vocabulary


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def background_for(query: str, vocabulary: tuple[str, ...]) -> list[int]:
    """Indices of the vocabulary entries that are a background for ``query`` (no word in common)."""
    words = _words(query)
    return [i for i, prompt in enumerate(vocabulary) if not (_words(prompt) & words)]


def contrast_probability(query: np.ndarray, background: np.ndarray, scale: float) -> np.ndarray:
    """Per pixel, the softmax probability of ``query`` (h, w) against ``background`` (B, h, w) at
    temperature ``1 / scale``, as ``1 / (1 + sum_b exp(scale * (s_b - s_q)))`` (float32; an overflow
    gives the right limit, 0; 1 everywhere when there is no background)."""
    q = np.asarray(query, dtype=np.float32)
    if background.shape[0] == 0:
        return np.ones(q.shape, dtype=np.float32)
    with np.errstate(over="ignore"):
        others = np.exp(np.float32(scale) * (np.asarray(background, dtype=np.float32) - q)).sum(axis=0)
        return (np.float32(1.0) / (np.float32(1.0) + others)).astype(np.float32)


def contrast_maps(query_maps: np.ndarray, queries: list[str], background: np.ndarray, vocabulary: tuple[str, ...],
                  scale: float) -> np.ndarray:
    """(Q, h, w) probabilities of each query's map against the background maps (B, h, w) of ``vocabulary``
    that share no word with it."""
    out = np.empty(np.shape(query_maps), dtype=np.float32)
    for i, query in enumerate(queries):
        out[i] = contrast_probability(query_maps[i], background[background_for(query, vocabulary)], scale)
    return out


def _checked(maps: Any, n: int) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != n:
        raise ConfigError(f"the scorer returned shape {maps.shape} for {n} queries; a scorer's "
                          "score_maps(tile, queries) must return (len(queries), h, w)")
    return maps


class ContrastScorer:
    """A scorer whose maps are contrast probabilities (0..1) of the queries of any ``scorer``.

    The background maps of a tile are computed once per ``tile.key`` (in the same ``score_maps`` call
    as the first queries) and kept for ``cache_tiles`` tiles.
    """

    def __init__(self, scorer: Any, vocabulary: tuple[str, ...] | None = None,
                 logit_scale: float = CLIP_LOGIT_SCALE, cache_tiles: int = 4) -> None:
        self.scorer = scorer  # the wrapped scorer (GRAFT cosines, or any other)
        self.vocabulary = tuple(vocabulary) if vocabulary is not None else load_vocabulary()
        self.logit_scale = float(logit_scale)  # softmax scale (CLIP's 100)
        self._background: LRU[str, np.ndarray] = LRU(max_items=cache_tiles)  # tile key -> (B, h, w)

    def score_maps(self, tile: Any, queries: list[str]) -> np.ndarray:
        """(len(queries), h, w) float32 probabilities of each query against its background."""
        queries = list(queries)
        background = self._background.get(tile.key)
        asked = queries if background is not None else queries + list(self.vocabulary)
        maps = _checked(self.scorer.score_maps(tile, asked), len(asked))
        if background is None:
            background = self._background.put(tile.key, maps[len(queries):])
        return contrast_maps(maps[:len(queries)], queries, background, self.vocabulary, self.logit_scale)


class ContrastSource:
    """A map source (:class:`~graft_vqa.perception.protocols.MapSource`) of contrast probabilities on
    another source's grid: the background is scored once, with the first queries."""

    def __init__(self, source: Any, vocabulary: tuple[str, ...], logit_scale: float = CLIP_LOGIT_SCALE) -> None:
        self.source = source  # the map source of the scores (a whole tile, or a scene)
        self.scale = source.scale  # pixels per map cell
        self.vocabulary = tuple(vocabulary)
        self.logit_scale = float(logit_scale)
        self._background: np.ndarray | None = None  # (B, rows, cols)

    def score_maps(self, names: list[str]) -> np.ndarray:
        """(len(names), rows, cols) float32 probabilities."""
        names = list(names)
        asked = names if self._background is not None else names + list(self.vocabulary)
        maps = _checked(self.source.score_maps(asked), len(asked))
        if self._background is None:
            self._background = maps[len(names):]
        return contrast_maps(maps[:len(names)], names, self._background, self.vocabulary, self.logit_scale)

    def valid(self) -> np.ndarray:
        return self.source.valid()

    def find(self, score_map: np.ndarray, box: tuple[int, int, int, int], config: Any, refiner: Any,
             name: str | None = None) -> list[Any]:
        """The wrapped source's instances of a probability map (never rescored as the query's scores)."""
        return self.source.find(score_map, box, config, refiner, name=None)


def contrast_scorer(scorer: Any, config: Any) -> ContrastScorer:
    """The contrast scorer of a :class:`~graft_vqa.config.FindConfig`'s vocabulary and scale over ``scorer``."""
    return ContrastScorer(scorer, load_vocabulary(config.contrast_vocabulary), config.contrast_logit_scale)
