"""Embeddings of single frames, for everything that reads a trained model's latent space
(planning, probes, decoders, the graph planner)."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def embed_frames(model, pixels, rows: np.ndarray | None = None, batch: int = 512) -> torch.Tensor:
    """Embeddings (n, D), float, on the model's device, of single frames: `pixels` itself
    (a sequence of (H, W, 3) uint8 images), or its `rows` when given (sorted, as HDF5 reads
    want). Frames go through the encoder `batch` at a time, so a large set fits in memory."""
    n = len(pixels) if rows is None else len(rows)
    out = []
    for i in range(0, n, batch):
        part = pixels[i : i + batch] if rows is None else pixels[rows[i : i + batch]]
        frames = torch.from_numpy(np.asarray(part if rows is not None else np.stack(part)))
        out.append(model.encode(frames[:, None].to(model.device))[:, 0].float())
    return torch.cat(out)
