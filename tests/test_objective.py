"""The LeWM objective as the paper states it: each prediction is scored against the next
frame's embedding, the targets are not detached, a tiny run learns, and without SIGReg the
embeddings shrink towards a point while with it they do not."""

import dataclasses

import pytest
import torch

from lewm.losses import loss_terms
from lewm.model import LeWM
from lewm.recipes import RECIPES, get_recipe
from lewm.trainconfig import override

TINY = RECIPES["tiny"].train


def batch(seed=0, B=8):
    g = torch.Generator().manual_seed(seed)
    m = TINY.model
    pixels = torch.randint(0, 256, (B, TINY.clip_frames, 32, 32, 3), generator=g,
                           dtype=torch.uint8)
    return pixels, torch.randn(B, TINY.clip_frames, m.frameskip * m.action_dim, generator=g)


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


def test_the_rollout_loss_scores_a_prediction_made_from_a_prediction():
    """rollout_steps = 1: the clip has one more frame, and the extra term scores frame h + 1
    predicted from the window whose last embedding is the model's own prediction of frame h
    (computed here with the plain predictor, not the rollout code)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, regularizer="none", rollout_steps=1)
    model = LeWM(cfg.model).eval()
    for p in [*model.predictor.parameters(), *model.action_encoder.parameters()]:
        torch.nn.init.normal_(p, std=0.3)  # AdaLN-zero starts as the identity: wake it up
    h, B = cfg.model.history, 8
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (B, cfg.clip_frames, 32, 32, 3), generator=g, dtype=torch.uint8)
    actions = torch.randn(B, cfg.clip_frames, cfg.model.frameskip * cfg.model.action_dim,
                          generator=g)
    assert cfg.clip_frames == h + 2
    terms = loss_terms(model, pixels, actions, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        emb, act = model.encode(pixels), model.embed_actions(actions)
        pred_h = model.predict(emb[:, :h], act[:, :h])[:, -1:]  # frame h, teacher-forced
        window = torch.cat([emb[:, 1:h], pred_h], 1)  # the last h frames, the newest predicted
        pred_h1 = model.predict(window, act[:, 1 : h + 1])[:, -1]
        expected = F.mse_loss(pred_h1, emb[:, h + 1])
        assert F.mse_loss(pred_h1, model.predict(emb[:, 1 : h + 1], act[:, 1 : h + 1])[:, -1]) > 0
    torch.testing.assert_close(terms["rollout_loss"], expected)
    assert terms["loss"] == terms["pred_loss"] + terms["rollout_loss"]


def test_sigreg_over_the_clip_tests_every_frame_as_one_sample():
    """sigreg_over='clip' pools the T frames of the B clips into one sample of T * B
    embeddings; 'step' averages T tests of B."""
    from lewm.losses import sigreg

    torch.manual_seed(0)
    model = LeWM(TINY.model)
    pixels, actions = batch()
    for over in ("step", "clip"):
        cfg = dataclasses.replace(TINY, sigreg_over=over)
        got = loss_terms(model, pixels, actions, cfg, torch.Generator().manual_seed(0))
        z = model.encode(pixels).transpose(0, 1)  # (T, B, D)
        if over == "clip":
            z = z.reshape(1, -1, z.shape[-1])
        want = sigreg(z, cfg.num_proj, torch.Generator().manual_seed(0))
        torch.testing.assert_close(got["sigreg"], want)
    with pytest.raises(Exception, match="sigreg_over"):
        dataclasses.replace(TINY, sigreg_over="batch")


def test_a_tiny_run_learns(tworoom_file, tmp_path):
    import json

    from lewm.train import train

    cfg = override(get_recipe("tiny").train, ["steps=40", "log_every=5"])
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
        cfg = override(get_recipe("tiny").train, ["steps=80", f"regularizer={reg}", "val_every=80",
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


def test_window_clips_are_the_windows_consecutive_runs():
    from lewm.model.lewm import window_clips

    x = torch.arange(2 * 6).view(2, 6, 1).float()  # 2 windows of 6 frames
    clips = window_clips(x, 4)  # 3 clips each
    assert clips.shape == (6, 4, 1)
    assert clips[0, :, 0].tolist() == [0, 1, 2, 3]
    assert clips[2, :, 0].tolist() == [2, 3, 4, 5]
    assert clips[3, :, 0].tolist() == [6, 7, 8, 9]


@pytest.mark.parametrize("rollout_steps", [0, 1])
def test_a_window_of_clips_has_the_loss_and_gradients_of_its_clips(rollout_steps):
    """clips_per_window K: each frame encoded once, and the loss and every gradient those of
    the window's K clips drawn one by one (BatchNorm and dropout frozen, so that the batch's
    composition alone is what could differ)."""
    from lewm.model.lewm import window_clips

    K = 3
    base = dataclasses.replace(TINY, rollout_steps=rollout_steps)
    windowed = dataclasses.replace(base, clips_per_window=K, batch_size=K * 4)
    assert windowed.window_frames == base.clip_frames + K - 1
    torch.manual_seed(0)
    model = LeWM(base.model).eval()
    for p in [*model.predictor.parameters(), *model.action_encoder.parameters()]:
        torch.nn.init.normal_(p, std=0.3)  # AdaLN-zero starts as the identity: wake it up
    g = torch.Generator().manual_seed(2)
    m = base.model
    pixels = torch.randint(0, 256, (4, windowed.window_frames, 32, 32, 3), generator=g,
                           dtype=torch.uint8)
    actions = torch.randn(4, windowed.window_frames, m.frameskip * m.action_dim, generator=g)

    def loss_and_grads(cfg, px, act):
        model.zero_grad()
        terms = loss_terms(model, px, act, cfg, torch.Generator().manual_seed(0))
        terms["loss"].backward()
        return terms, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    got, got_grads = loss_and_grads(windowed, pixels, actions)
    clips = window_clips(pixels.float(), base.clip_frames)  # the same clips one by one
    want, want_grads = loss_and_grads(base, clips, window_clips(actions, base.clip_frames))
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_clips_per_window_must_divide_the_batch():
    with pytest.raises(Exception, match="clips_per_window"):
        dataclasses.replace(TINY, batch_size=10, clips_per_window=4)
    with pytest.raises(Exception, match="clips_per_window"):
        dataclasses.replace(TINY, clips_per_window=0)
