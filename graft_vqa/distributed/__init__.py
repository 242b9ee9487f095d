"""Scenes, tile collections and benchmark evaluation on a Ray cluster (optional extra ``[distributed]``).

Only this package imports ``ray`` (an import-linter contract in ``pyproject.toml``), and only the
``--ray`` code paths import this package, so the default path never loads Ray.

- :func:`connect`: join a cluster (``host:port``, ``auto``) or start a local Ray (127.0.0.1 only);
- :class:`WorkerPool`: actors that build their models once and run units of work, surviving killed
  workers (Ray restarts the actor and retries its unit);
- :class:`RayWindowRunner`: a scene's windows scored on the actors (``Engine(window_runner=...)``);
- :func:`ask_many` / :class:`RayTiles`: tile collections, a tile with its questions per unit;
- :func:`build_index` / :class:`RayChips`: search indexing, a file (or chips of a large one) per unit,
  the index written by this process alone.

The evaluation's units (one image with its questions) run on a :class:`WorkerPool` too
(``graft_vqa.interfaces.evaluation``). See ``docs/distributed.md``.
"""
from __future__ import annotations

from graft_vqa.core.errors import DistributedError

try:
    import ray  # noqa: F401 - the optional extra: a named error when it is missing
except ImportError:
    raise DistributedError("--ray needs Ray, which is not installed: install the optional extra "
                           "with pip install 'graft-vqa[distributed]'") from None

from graft_vqa.distributed.cluster import Cluster, connect, disconnect  # noqa: E402
from graft_vqa.distributed.pool import Done, WorkerPool, WorkerSpec, worker_spec  # noqa: E402
from graft_vqa.distributed.tiles import RayTiles, ask_many  # noqa: E402

__all__ = ["Cluster", "Done", "RayChips", "RayTiles", "RayWindowRunner", "WorkerPool", "WorkerSpec", "ask_many",
           "build_index", "connect", "disconnect", "worker_spec"]


def __getattr__(name: str) -> object:
    """``RayWindowRunner``, ``RayChips`` and ``build_index`` on first use: the scene and index code loads
    torch, which evaluation workers running another system (``--answerer``) never need (start-up speed only)."""
    if name == "RayWindowRunner":
        from graft_vqa.distributed.scenes import RayWindowRunner

        return RayWindowRunner
    if name in ("RayChips", "build_index"):
        from graft_vqa.distributed import index

        return getattr(index, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
