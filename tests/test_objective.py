"""The LeWM objective as the paper states it: each prediction is scored against the next
frame's embedding, the targets are not detached, a tiny run learns, and without SIGReg the
embeddings shrink towards a point while with it they do not."""

import dataclasses

import pytest
import torch

from lewm.losses import loss_terms
from lewm.model import LeWM
from lewm.presets import PRESETS, get_preset, override

TINY = PRESETS["tiny"]


def batch(seed=0, B=8):
    g = torch.Generator().manual_seed(seed)
    m = TINY.model
    pixels = torch.randint(0, 256, (B, TINY.num_steps, 32, 32, 3), generator=g,
                           dtype=torch.uint8)
    return pixels, torch.randn(B, TINY.num_steps, m.frameskip * m.action_dim, generator=g)


def test_gradient_reaches_the_targets():
    """No stop-gradient: the last frame of a clip is only ever a target, and the prediction
    loss still moves its embedding."""
    torch.manual_seed(0)
    model = LeWM(TINY.model)
    pixels, actions = batch()
    seen = {}
    encode = model.encode

    def spy(p):
        seen["emb"] = encode(p)
        seen["emb"].retain_grad()
        return seen["emb"]

    model.encode = spy
    cfg = dataclasses.replace(TINY, regularizer="none")
    loss_terms(model, pixels, actions, cfg, torch.Generator().manual_seed(0))["loss"].backward()
    assert seen["emb"].grad[:, -1].abs().sum() > 0


class Shifted(torch.nn.Module):
    """A model whose prediction for step t is exactly the embedding of frame t + k."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, pixels, actions):
        emb = pixels.float().mean((2, 3))  # (B, T, 3)
        T = emb.shape[1]
        return emb, emb[:, self.k : self.k + T - 1]


def test_prediction_t_is_scored_against_frame_t_plus_1():
    pixels, actions = batch()
    cfg = dataclasses.replace(TINY, regularizer="none")
    gen = torch.Generator().manual_seed(0)
    assert loss_terms(Shifted(1), pixels, actions, cfg, gen)["pred_loss"] == 0
    assert loss_terms(Shifted(0), pixels, actions, cfg, gen)["pred_loss"] > 0


def test_a_tiny_run_learns(tworoom_file, tmp_path):
    import json

    from lewm.train import train

    cfg = override(get_preset("tiny"), ["steps=40", "log_every=5"])
    train(cfg, tworoom_file, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    pred = [r["pred_loss"] for r in rows if r["split"] == "train"]
    assert pred[-1] < 0.5 * pred[0]


def test_without_sigreg_the_embeddings_collapse(tworoom_file, tmp_path):
    """The same run with and without SIGReg: without it the embeddings shrink towards a
    point; with it they spread out towards the unit Gaussian's scale."""
    import json

    from lewm.train import train

    std = {}
    for reg in ("none", "sigreg"):
        cfg = override(get_preset("tiny"), ["steps=80", f"regularizer={reg}", "val_every=80",
                                            "lambd=0.5"])
        train(cfg, tworoom_file, tmp_path / reg, progress=False)
        val = [json.loads(line) for line in (tmp_path / reg / "metrics.jsonl").open()][-1]
        std[reg] = val["std_mean"]
    assert std["none"] < 0.1 and std["sigreg"] > 3 * std["none"], std


def test_rollout_refuses_misaligned_context():
    torch.manual_seed(0)
    model = LeWM(TINY.model).eval()
    blk = TINY.model.frameskip * TINY.model.action_dim
    with pytest.raises(ValueError, match="need 1 context action"):
        model.rollout(torch.randn(2, 2, TINY.model.embed_dim), None, torch.randn(2, 3, blk))
