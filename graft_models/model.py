"""The GRAFT satellite encoder: open_clip's CLIP ViT vision tower with GRAFT's two heads.

* Image level: ``normalize(ln_post(CLS) @ proj)``, CLIP's own head (fine-tuned by GRAFT).
* Pixel level: ``normalize(Linear(width -> embed_dim, no bias)(LayerNorm(width)(token)))`` on the
  last hidden tokens *before* ``ln_post``, CLS dropped, reshaped to the patch grid.

The tower is built from a config with open_clip's own classes (no download). Its forward is
written out here from the tower's submodules because open_clip's ``VisionTransformer.forward``
does not expose the tokens before ``ln_post``; a test checks it equals open_clip's forward.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from graft_vqa.core.errors import WeightsError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraftConfig:
    """Architecture of a GRAFT encoder (everything needed to rebuild it without weights)."""

    name: str = "graft-vitb16"  # registry name, for logs and saved checkpoints
    image_size: int = 224  # native input side in pixels (positions are learned for this grid)
    patch_size: int = 16  # side of one patch in pixels
    width: int = 768  # transformer width (768 for ViT-B)
    layers: int = 12  # number of transformer blocks
    head_width: int = 64  # channels per attention head (heads = width // head_width)
    mlp_ratio: float = 4.0  # MLP hidden size / width
    embed_dim: int = 512  # output embedding size of both heads (CLIP's joint space)
    quick_gelu: bool = True  # QuickGELU activations as in OpenAI's CLIP

    @property
    def heads(self) -> int:
        """Number of attention heads."""
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        """Native patch-grid side (14 for 224 px and 16 px patches)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        """Plain-typed dict (safe for ``weights_only`` checkpoints)."""
        return asdict(self)


GRAFT_MODELS: dict[str, GraftConfig] = {
    "graft-vitb16": GraftConfig(),
    "graft-tiny": GraftConfig(name="graft-tiny", width=128, layers=2, head_width=64),
}


class GraftModel(nn.Module):
    """GRAFT encoder. Inputs are CLIP-normalised ``(B, 3, H, W)`` tensors.

    224x224 is native; other sizes (multiples of the patch size) interpolate the position
    embedding bicubically on the patch grid, so a 512x512 tile gives a 32x32 grid.
    """

    def __init__(self, config: GraftConfig) -> None:
        super().__init__()
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        self.config = config
        vision_cfg = CLIPVisionCfg(
            layers=config.layers, width=config.width, head_width=config.head_width,
            mlp_ratio=config.mlp_ratio, patch_size=config.patch_size, image_size=config.image_size,
        )
        self.visual = _build_vision_tower(config.embed_dim, vision_cfg, quick_gelu=config.quick_gelu)
        self.pixel_head = nn.Sequential(
            nn.LayerNorm(config.width), nn.Linear(config.width, config.embed_dim, bias=False)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.has_pixel_head = True  # False after loading an image-level-only checkpoint

    # --- building blocks -----------------------------------------------------------------------
    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding (1 + gh*gw, width), bicubically interpolated when the grid differs."""
        pos = self.visual.positional_embedding
        g0h, g0w = self.visual.grid_size
        if (gh, gw) == (g0h, g0w):
            return pos
        grid = pos[1:].reshape(1, g0h, g0w, -1).permute(0, 3, 1, 2)
        # Same resampling as open_clip's and timm's position-embedding resize (antialiased bicubic).
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False, antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1)
        return torch.cat([pos[:1], grid], dim=0)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Last hidden tokens ``(B, 1 + gh*gw, width)`` before ``ln_post``, and the grid ``(gh, gw)``."""
        v = self.visual
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        x = v.conv1(x)  # (B, width, gh, gw)
        b, _, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, width)
        cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self.position_embedding(gh, gw).to(x.dtype)
        x = v.patch_dropout(x)
        x = v.ln_pre(x)
        # open_clip 3.x: Transformer.forward takes batch-first (N, L, D) input and transposes
        # internally when its blocks run sequence-first.
        x = v.transformer(x)
        return x, (gh, gw)

    def image_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image-level embedding (B, embed_dim), L2-normalised, from the tokens."""
        pooled = self.visual.ln_post(tokens[:, 0])
        return F.normalize(pooled @ self.visual.proj, dim=-1)

    def patch_head(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Pixel-level embeddings (B, gh, gw, embed_dim), L2-normalised, from the tokens."""
        if not self.has_pixel_head:
            raise WeightsError(
                "this GRAFT checkpoint has no pixel-level head (no 'projector.*' weights); "
                "load the pixel-level checkpoint (e.g. graft_naip_patch.ckpt) for patch features"
            )
        feats = self.pixel_head(tokens[:, 1:])
        return F.normalize(feats, dim=-1).reshape(tokens.shape[0], grid[0], grid[1], -1)

    # --- public encoders -----------------------------------------------------------------------
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image-level embeddings ``(B, embed_dim)``, L2-normalised."""
        tokens, _ = self.tokens(x)
        return self.image_head(tokens)

    def encode_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``(B, H/16, W/16, embed_dim)``, L2-normalised."""
        tokens, grid = self.tokens(x)
        return self.patch_head(tokens, grid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads from one pass: ``(image (B, D), patches (B, gh, gw, D))``."""
        tokens, grid = self.tokens(x)
        return self.image_head(tokens), self.patch_head(tokens, grid)
