#!/usr/bin/env bash
# GRAFT training-step throughput on one GPU: stored ground embeddings vs raw ground images.
# ViT-B/16 satellite encoder and CLIP ViT-B/16 ground encoder (random weights: throughput only),
# bf16 autocast. Run from the repository root on the device machine; takes ~1-2 minutes.
set -euo pipefail
PY=${PY:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for level in image both; do
  timeout 280 "$PY" bench/train_step.py --device cuda --sat-model graft-vitb16 \
    --ground-encoder clip-vitb16 --batch 64 --grounds 10 --steps 10 --level "$level"
done
