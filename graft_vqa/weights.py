"""Where model weights come from: one registry, one resolution order.

Every model file is resolved the same way (DESIGN.md, "Weights"):

1. an explicit path given by the caller;
2. the folder named by ``GRAFT_VQA_WEIGHTS``;
3. the cache, ``$GRAFT_VQA_HOME/weights`` (default ``~/.cache/graft_vqa/weights``);
4. a download, only where the source is published and only when asked (``download=True`` or
   ``graft-vqa weights pull NAME``);
5. otherwise :class:`~graft_vqa.core.errors.WeightsNotFoundError` saying which file to put where.

Nothing here runs at import time; environment variables are read when a function is called.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from graft_vqa.core.errors import WeightsError, WeightsNotFoundError

log = logging.getLogger(__name__)

GRAFT_PAGE = "the GRAFT project page (https://graft.cs.cornell.edu) or the paper's authors"


@dataclass(frozen=True)
class WeightSource:
    """One model file the project knows about."""

    name: str  # registry name, used on the command line
    kind: str  # "graft", "sam" or "clip"
    filename: str  # file name looked up in $GRAFT_VQA_WEIGHTS and in the cache
    builder: str  # the model builder it feeds (graft_models / SAM registry name)
    description: str  # one line for `graft-vqa weights list`
    url: str | None = None  # published download address; None when the user must supply the file
    size_bytes: int | None = None  # expected size of the download, when known

    @property
    def path_option(self) -> str:
        """The EngineConfig field that takes this kind of file explicitly (``graft_checkpoint``, ...)."""
        return {"graft": "graft_checkpoint", "clip": "clip_checkpoint", "sam": "sam_checkpoint"}[self.kind]


def _graft(name: str, filename: str, what: str) -> WeightSource:
    return WeightSource(name, "graft", filename, "graft-vitb16", what)


_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"

WEIGHTS: dict[str, WeightSource] = {
    s.name: s
    for s in [
        _graft("graft-naip", "graft_naip.ckpt", "GRAFT image level, NAIP 1 m (official checkpoint)"),
        _graft("graft-naip-patch", "graft_naip_patch.ckpt", "GRAFT pixel level, NAIP 1 m (official checkpoint)"),
        _graft("graft-sentinel", "graft_sentinel.ckpt", "GRAFT image level, Sentinel-2 10 m (official checkpoint)"),
        _graft("graft-sentinel-patch", "graft_sentinel_patch.ckpt",
               "GRAFT pixel level, Sentinel-2 10 m (official checkpoint)"),
        WeightSource("clip-vitb16", "clip", "clip_vit_b16_openai.safetensors", "clip-vitb16",
                     "CLIP ViT-B/16, OpenAI weights in open_clip's layout (GRAFT's text tower)",
                     url="https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/"
                         "open_clip_model.safetensors"),
        WeightSource("sam-vit_b", "sam", "sam_vit_b_01ec64.pth", "vit_b", "SAM ViT-B (Meta AI)",
                     url=_SAM_BASE + "sam_vit_b_01ec64.pth", size_bytes=375_042_383),
        WeightSource("sam-vit_l", "sam", "sam_vit_l_0b3195.pth", "vit_l", "SAM ViT-L (Meta AI)",
                     url=_SAM_BASE + "sam_vit_l_0b3195.pth", size_bytes=1_249_524_607),
        WeightSource("sam-vit_h", "sam", "sam_vit_h_4b8939.pth", "vit_h", "SAM ViT-H (Meta AI)",
                     url=_SAM_BASE + "sam_vit_h_4b8939.pth", size_bytes=2_564_550_879),
    ]
}


def home() -> Path:
    """The project's home folder: ``$GRAFT_VQA_HOME``, else ``~/.cache/graft_vqa``."""
    env = os.environ.get("GRAFT_VQA_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graft_vqa"


def cache_dir() -> Path:
    """Where downloaded weights are kept."""
    return home() / "weights"


def source(name: str) -> WeightSource:
    """The registry entry for ``name``; a clear error listing the known names otherwise."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}") from None


def candidates(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """The places looked at for ``name``, in resolution order."""
    spec = source(name)
    places: list[Path] = []
    if path is not None:
        places.append(Path(path).expanduser())
    env = os.environ.get("GRAFT_VQA_WEIGHTS")
    if env:
        places.append(Path(env).expanduser() / spec.filename)
    places.append(cache_dir() / spec.filename)
    return places


def find(name: str, path: str | os.PathLike | None = None) -> Path | None:
    """The first existing file for ``name`` without downloading, or ``None``.

    An explicit ``path`` that does not exist is an error, never silently replaced by another file.
    """
    if path is not None and not Path(path).expanduser().is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist (given explicitly for {name!r})")
    for place in candidates(name, path):
        if place.is_file():
            return place
    return None


def search_folder() -> Path:
    """The folder a missing file should go to: ``$GRAFT_VQA_WEIGHTS`` when set, else the cache."""
    env = os.environ.get("GRAFT_VQA_WEIGHTS")
    return Path(env).expanduser() if env else cache_dir()


def missing_hint(name: str) -> str:
    """Which file ``name`` needs, where to get it and where to put it (one or two sentences).

    Settings and commands are named as in the Python API (``graft_checkpoint=PATH``,
    ``graft_vqa.weights.pull('NAME')``); the CLI and the app say them their own way
    (:mod:`graft_vqa.interfaces.advice`).
    """
    spec = source(name)
    origin = spec.url or GRAFT_PAGE
    pull = f", or run graft_vqa.weights.pull('{name}') on a machine with network access" if spec.url else ""
    return (f"no weights for {name!r} ({spec.description}). Download {spec.filename} from {origin} and put it in "
            f"{search_folder()}/ (or pass {spec.path_option}=PATH){pull}.")


def missing_message(name: str) -> str:
    """What to fetch and where to put it, for a user who is offline, and how to run without it."""
    if source(name).kind == "sam":  # SAM never runs with random weights
        return (f"{missing_hint(name)} Without it, find keeps the thresholded components "
                "(pass refine='none' to say so and skip SAM).")
    return (f"{missing_hint(name)} To run without trained weights, pass allow_untrained=True: "
            "answers will then be marked untrained.")


def resolve(name: str, path: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """Resolve ``name`` to a file: explicit path → ``$GRAFT_VQA_WEIGHTS`` → cache → download → error."""
    found = find(name, path)
    if found is not None:
        return found
    if download and source(name).url:
        return pull(name)
    raise WeightsNotFoundError(missing_message(name))


FINGERPRINT_BYTES = 1 << 20  # bytes read from each end of a weights file for its fingerprint


def fingerprint(path: str | os.PathLike) -> str:
    """A short id of a weights file that is cheap for large files: its size and a BLAKE2b digest of its
    first and last MiB (two copies of one checkpoint agree; another checkpoint differs)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=8)
    with open(path, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(size - FINGERPRINT_BYTES, FINGERPRINT_BYTES))
            digest.update(f.read())
    return f"{size}:{digest.hexdigest()}"


def pull(name: str, *, url: str | None = None, progress: bool = True) -> Path:
    """Download ``name`` into the cache (atomically, with a progress bar) and return its path."""
    spec = source(name)
    url = url or spec.url
    if not url:
        raise WeightsNotFoundError(f"{name!r} has no published download address. {missing_message(name)}")
    target = cache_dir() / spec.filename
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        try:
            written, length = _download(url, partial, spec, progress)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise WeightsNotFoundError(f"could not download {url} ({exc}). {missing_message(name)}") from None
        for expected, what in ((length, "the server announced"), (spec.size_bytes, "the registry expects")):
            if expected is not None and written != expected:
                raise WeightsNotFoundError(
                    f"the download of {url} is incomplete or not the expected file: {written} bytes, but "
                    f"{what} {expected}; run `graft-vqa weights pull {name}` again. {missing_message(name)}")
        shutil.move(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("downloaded %s to %s", name, target)
    return target


def _download(url: str, partial: Path, spec: WeightSource, progress: bool) -> tuple[int, int | None]:
    """Stream ``url`` into ``partial``; return (bytes written, Content-Length or None)."""
    from tqdm.auto import tqdm  # only a download needs it (start-up stays light)

    written = 0
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
        header = response.headers.get("Content-Length")
        length = int(header) if header else None
        with tqdm(total=length or spec.size_bytes, unit="B", unit_scale=True, desc=spec.filename,
                  disable=not progress) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    return written, length


def file_id(path: str | Path) -> str:
    """A short id of a weights file (resolved path, size and modification time), for cache keys."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
