"""Embed every ground photo once with the frozen CLIP image encoder; train from the stored vectors.

Layout of ``out_dir``: ``keys.txt`` (one photo key per line, in order) and float16 shards
``shard_00000.safetensors`` ... (tensor ``emb`` of shape (n, D), ``shard_size`` rows each except the
last). A run skips shards already on disk, so an interrupted run resumes where it stopped; shards
are written to a temporary name and renamed, so a crash never leaves a half shard.

CLI: ``python -m graft_models.embed_ground --root PAIRS --out EMB --clip CHECKPOINT`` embeds every
ground photo of the official layout under ``PAIRS``.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from graft_models.checkpoint import load_module_state, read_file, unwrap
from graft_models.data.dataset import ground_tensor
from graft_vqa.core.errors import DatasetNotFoundError, WeightsNotFoundError

log = logging.getLogger(__name__)
KEYS = "keys.txt"


def _shard_path(out: Path, k: int) -> Path:
    return out / f"shard_{k:05d}.safetensors"


def _write_keys(out: Path, keys: list[str]) -> None:
    path = out / KEYS
    if path.is_file():
        if path.read_text().splitlines() != keys:
            raise DatasetNotFoundError(f"{out} holds embeddings of another photo list; "
                                       "pass a new out_dir or delete the old one")
        return
    path.write_text("\n".join(keys) + "\n")


@torch.no_grad()
def embed_ground(image_paths: Sequence[str], encoder: Callable[[Tensor], Tensor],
                 out_dir: str | Path, *, root: str | Path | None = None, batch_size: int = 64,
                 shard_size: int = 4096, image_size: int = 224,
                 device: str | torch.device = "cpu") -> Path:
    """Embed ``image_paths`` (keys; files under ``root`` when given) into float16 shards in ``out_dir``.

    ``encoder`` maps CLIP-normalised (B, 3, S, S) images to (B, D) embeddings (it is run in
    ``no_grad``; pass a frozen CLIP image tower). Returns ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(str(p) for p in image_paths))
    _write_keys(out, keys)
    base = Path(root) if root is not None else Path()
    n_shards = (len(keys) + shard_size - 1) // shard_size
    todo = [k for k in range(n_shards) if not _shard_path(out, k).is_file()]
    log.info("%d photos, %d shards, %d to do", len(keys), n_shards, len(todo))
    bar = tqdm(total=sum(len(keys[k * shard_size:(k + 1) * shard_size]) for k in todo),
               desc="embed ground", unit="img", disable=not todo)
    for k in todo:
        chunk = keys[k * shard_size:(k + 1) * shard_size]
        parts = []
        for i in range(0, len(chunk), batch_size):
            x = torch.stack([ground_tensor(base / p, image_size) for p in chunk[i:i + batch_size]])
            parts.append(encoder(x.to(device)).float().cpu())
            bar.update(x.shape[0])
        tmp = _shard_path(out, k).with_suffix(".tmp")
        save_file({"emb": torch.cat(parts).to(torch.float16).contiguous()}, str(tmp))
        os.replace(tmp, _shard_path(out, k))
    bar.close()
    return out


class GroundEmbeddings:
    """Read-only view of an :func:`embed_ground` folder: ``get(keys) -> (n, D)`` float16."""

    def __init__(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        if not (out / KEYS).is_file():
            raise DatasetNotFoundError(f"{out} has no {KEYS}; run graft_models.embed_ground first")
        keys = (out / KEYS).read_text().splitlines()
        shards = []
        k = 0
        while len(keys) > sum(s.shape[0] for s in shards):
            if not _shard_path(out, k).is_file():
                raise DatasetNotFoundError(f"{_shard_path(out, k)} is missing: embed_ground did not "
                                           "finish; run it again on the same out_dir to resume")
            shards.append(load_file(str(_shard_path(out, k)))["emb"])
            k += 1
        self.table = torch.cat(shards) if shards else torch.zeros(0, 0, dtype=torch.float16)
        self.row = {key: i for i, key in enumerate(keys)}

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.table.shape[1])

    def __len__(self) -> int:
        return len(self.row)

    def get(self, keys: Sequence[str]) -> Tensor:
        """Embeddings of ``keys`` in order, (n, D) float16."""
        try:
            return self.table[[self.row[str(k)] for k in keys]]
        except KeyError as exc:
            raise DatasetNotFoundError(f"ground photo {exc.args[0]!r} was not embedded; "
                                       "rerun embed_ground over the current pair list") from None


class FrozenEncoder(nn.Module):
    """A frozen image tower: CLIP-normalised (B, 3, S, S) -> L2-normalised (B, D), no gradient."""

    def __init__(self, encode: nn.Module, fn: str = "encode_image") -> None:
        super().__init__()
        self.inner = encode.eval().requires_grad_(False)
        self.fn = fn

    def train(self, mode: bool = True) -> "FrozenEncoder":  # stays in eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return F.normalize(getattr(self.inner, self.fn)(x).float(), dim=-1)


def load_clip_state(path: str | Path) -> dict[str, Tensor]:
    """A CLIP state dict from ``path`` (torch pickle or safetensors, ``state_dict`` wrapper allowed).

    Read through :func:`graft_models.checkpoint.read_file` (safe loading, clear CheckpointError).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"CLIP checkpoint {path} not found; pass the open_clip ViT-B/16 "
                                   "OpenAI weights file (open_clip_pytorch_model.bin or .safetensors)")
    sd, _ = unwrap(*read_file(path, what="CLIP checkpoint"))
    return sd


def build_ground_encoder(name: str = "clip-vitb16", checkpoint: str | Path | None = None, *,
                         allow_untrained: bool = False, seed: int = 1234) -> FrozenEncoder:
    """The frozen ground-photo encoder f_G.

    ``clip-vitb16``: open_clip ``ViT-B-16-quickgelu`` image tower from ``checkpoint`` (an open_clip
    state dict). ``graft-tiny``: a seeded random tiny tower for tests (no weights needed). Random
    CLIP weights only with ``allow_untrained``.
    """
    if name == "graft-tiny":
        from graft_models.factory import build_graft

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return FrozenEncoder(build_graft("graft-tiny"))
    if name != "clip-vitb16":
        raise KeyError(f"unknown ground encoder {name!r}; use clip-vitb16 or graft-tiny")
    import open_clip

    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None)
    if checkpoint is not None:
        load_module_state(model, load_clip_state(checkpoint), f"CLIP checkpoint {checkpoint}")
    elif not allow_untrained:
        raise WeightsNotFoundError("the ground encoder needs CLIP ViT-B/16 weights: pass their path "
                                   "(config model.clip_checkpoint / --clip), or --allow-untrained for tests")
    return FrozenEncoder(model.visual, fn="forward")


def main(argv: list[str] | None = None) -> None:
    """CLI: embed every ground photo of an official layout with a frozen encoder."""
    from graft_models.data.official import read_official

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="root of the official pair layout")
    ap.add_argument("--out", required=True, help="folder for keys.txt and shards")
    ap.add_argument("--encoder", default="clip-vitb16", help="clip-vitb16 or graft-tiny (tests)")
    ap.add_argument("--clip", default=None, help="CLIP ViT-B/16 checkpoint (open_clip state dict)")
    ap.add_argument("--allow-untrained", action="store_true", help="random encoder (tests only)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    keys = [g for split in ("train", "test") if (Path(a.root) / "split_m2o" / f"{split}.csv").is_file()
            for r in read_official(a.root, split) for g in r.grounds]
    enc = build_ground_encoder(a.encoder, a.clip, allow_untrained=a.allow_untrained).to(a.device)
    embed_ground(keys, enc, a.out, root=a.root, batch_size=a.batch_size, shard_size=a.shard_size,
                 image_size=a.image_size, device=a.device)


if __name__ == "__main__":
    main()
