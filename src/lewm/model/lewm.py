"""LeWorldModel: encoder + projector, action encoder, causal predictor + pred_proj.

One method per role: `encode` (pixels -> embeddings), `embed_actions`, `predict` (one step of
teacher-forced prediction) and `rollout` (autoregressive prediction for planning).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lewm.model.card import ModelCard
from lewm.model.config import ModelConfig
from lewm.model.encoders import make_encoder
from lewm.model.predictor import Predictor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def projector(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    """Linear -> BatchNorm1d -> GELU -> Linear. The BatchNorm matters: after the ViT's final
    LayerNorm, SIGReg cannot be optimised without it (arXiv 2603.19312 §3.1)."""
    return nn.Sequential(
        nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, dim_out)
    )


class ActionEncoder(nn.Module):
    """Action block (frameskip * A values) -> Conv1d(kernel 1) -> Linear -> SiLU -> Linear."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.conv = nn.Conv1d(cfg.frameskip * cfg.action_dim, cfg.act_channels, kernel_size=1)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.act_channels, cfg.act_hidden), nn.SiLU(),
            nn.Linear(cfg.act_hidden, cfg.embed_dim),
        )

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        a = self.conv(a.transpose(1, 2)).transpose(1, 2)  # (B, T, act_channels)
        return self.mlp(a)  # (B, T, D)


class LeWM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg)
        self.projector = projector(cfg.enc_dim, cfg.proj_hidden, cfg.embed_dim)
        self.action_encoder = ActionEncoder(cfg)
        self.predictor = Predictor(cfg)
        self.pred_proj = projector(cfg.embed_dim, cfg.proj_hidden, cfg.embed_dim)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        # What the model carries beside its weights (world, input statistics, configs): set
        # by training and by `lewm.load` (lewm.model.card).
        self.card: ModelCard | None = None

    @property
    def trained_card(self) -> ModelCard:
        """The card, for work that needs a trained model (planning, probing, surprise)."""
        if self.card is None:
            from lewm.errors import LewmError

            raise LewmError("this model has no card (world, action statistics): use one made "
                            "by lewm.train or loaded by lewm.load")
        return self.card

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, H, W, 3) -> normalised float (N, 3, S, S) at the encoder's size."""
        x = pixels.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W); never in place
        S = self.cfg.image_size
        if x.shape[-2:] != (S, S):
            x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    def encode(self, pixels) -> torch.Tensor:
        """uint8 images (B, T, H, W, 3) -> embeddings (B, T, D).

        Also takes numpy arrays, and float images with values in [0, 255]. Anything else is a
        ValueError naming the expected layout: channels first, RGBA, grayscale, a missing
        time axis, an empty batch, and float images in [0, 1] (which would otherwise give a
        silently wrong embedding)."""
        pixels = check_images(pixels, self.device)
        B, T = pixels.shape[:2]
        x = self.preprocess(pixels.flatten(0, 1))  # (B*T, 3, S, S)
        z = self.projector(self.encoder(x))  # (B*T, D)
        return z.view(B, T, -1)

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """z-scored action blocks (B, T, frameskip * A) -> action embeddings (B, T, D)."""
        return self.action_encoder(actions)

    def predict(self, emb: torch.Tensor, act_emb: torch.Tensor) -> torch.Tensor:
        """Embeddings and action embeddings (B, T, D), T <= history -> predicted next
        embeddings (B, T, D): output t predicts the embedding of frame t + 1."""
        B, T, D = emb.shape
        h = self.predictor(emb, act_emb)  # (B, T, D)
        return self.pred_proj(h.reshape(B * T, D)).view(B, T, D)

    def forward(self, pixels: torch.Tensor, actions: torch.Tensor, clip_frames: int = 0):
        """The training step's forward pass (teacher forcing; docs/design.md §1.2).

        pixels: (B, T, H, W, 3) uint8 clip with T = history + 1; actions: (B, T, fs * A).
        Returns (emb (B, T, D), pred (B, T - 1, D)); pred[:, t] predicts emb[:, t + 1].
        With `clip_frames` < T, each row is a window of T frames: its frames are encoded once
        and it stands for its K = T - clip_frames + 1 clips (`window_clips`), so B becomes
        B * K and T clip_frames.
        """
        emb = self.encode(pixels)  # (B, T, D)
        if 0 < clip_frames < emb.shape[1]:
            emb, actions = window_clips(emb, clip_frames), window_clips(actions, clip_frames)
        h = self.cfg.history
        pred = self.predict(emb[:, :h], self.embed_actions(actions[:, :h]))  # (B, h, D)
        return emb, pred

    def rollout_actions(self, context_emb: torch.Tensor, context_actions: torch.Tensor | None,
                        future_actions: torch.Tensor) -> torch.Tensor:
        """The action embeddings (B, H - 1 + K, D) of a rollout's context and future blocks
        (see `rollout`), checked to pair with the H context frames."""
        H = context_emb.shape[1]
        if context_actions is None:
            context_actions = future_actions[:, :0]
        if context_actions.shape[1] != H - 1:
            # Each context frame but the last needs the block taken from it; without them the
            # action embeddings would pair with the wrong frames.
            raise ValueError(f"rollout: {H} context frames need {H - 1} context action blocks, "
                             f"got {context_actions.shape[1]}")
        return self.embed_actions(torch.cat([context_actions, future_actions], 1))

    def rollout(self, context_emb: torch.Tensor, context_actions: torch.Tensor | None,
                future_actions: torch.Tensor) -> torch.Tensor:
        """Predict K future embeddings autoregressively.

        context_emb: (B, H, D) embeddings of the last H frames (H >= 1), B = every candidate.
        context_actions: (B, H - 1, frameskip * A) z-scored action blocks taken from the first
            H - 1 context frames, or None when H = 1.
        future_actions: (B, K, frameskip * A) the blocks to apply from the last context frame.
        Returns (B, K, D): the predicted embeddings after each future block. The predictor
        sees at most `history` frames, as in training.
        """
        H, K = context_emb.shape[1], future_actions.shape[1]
        acts = self.rollout_actions(context_emb, context_actions, future_actions)
        # Step k predicts from the last `history` tokens (their positions 0, 1, ... within
        # the window), and only the last token's output is projected. This is the definition;
        # planning runs the same computation faster (a cache while the window grows, one
        # token's output alone, modulations computed once): lewm.planning.fast.
        W, embs, preds = self.cfg.history, context_emb, []
        for k in range(K):
            n = H + k
            h = self.predictor(embs[:, max(0, n - W) : n], acts[:, max(0, n - W) : n])
            nxt = self.pred_proj(h[:, -1]).unsqueeze(1)  # (B, 1, D)
            preds.append(nxt)
            embs = torch.cat([embs, nxt], 1)
        return torch.cat(preds, 1)  # (B, K, D)


def window_clips(x: torch.Tensor, clip_frames: int) -> torch.Tensor:
    """Windows (B, W, ...) -> their clips (B * K, clip_frames, ...), K = W - clip_frames + 1:
    clip b * K + j is frames j .. j + clip_frames - 1 of window b. A copy that keeps the
    gradient: a frame's gradient is the sum over the clips that hold it."""
    clips = x.unfold(1, clip_frames, 1)  # (B, K, ..., clip_frames)
    return clips.movedim(-1, 2).flatten(0, 1)


def check_images(pixels, device) -> torch.Tensor:
    """`pixels` as a tensor on `device` if it is a batch of clips of RGB images (B, T, H, W, 3),
    uint8 or float in [0, 255]; a ValueError naming the expected layout otherwise."""
    expected = "uint8 images (B, T, H, W, 3): batch, time, height, width, RGB"
    if not isinstance(pixels, torch.Tensor):
        import numpy as np

        if not isinstance(pixels, np.ndarray):
            raise ValueError(f"encode expects {expected}, got {type(pixels).__name__}")
        pixels = torch.from_numpy(np.ascontiguousarray(pixels))
    shape = tuple(pixels.shape)
    if pixels.ndim != 5 or shape[-1] != 3:
        hint = ""
        if pixels.ndim == 5 and shape[2] == 3:
            hint = " (channels first? move them last)"
        elif pixels.ndim == 5 and shape[-1] in (1, 4):
            hint = " (grayscale or RGBA: convert to RGB)"
        elif pixels.ndim == 4 and shape[-1] == 3:
            hint = " (no time axis? add one: pixels[:, None])"
        raise ValueError(f"encode expects {expected}; got shape {shape}{hint}")
    if pixels.numel() == 0:
        raise ValueError(f"encode expects {expected}; got an empty batch, shape {shape}")
    if pixels.dtype != torch.uint8:
        if not pixels.is_floating_point():
            raise ValueError(f"encode expects {expected}; got dtype {pixels.dtype}")
        lo, hi = float(pixels.min()), float(pixels.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"encode expects values in [0, 255]; got [{lo:.3g}, {hi:.3g}]")
        if 0 < hi <= 1:
            raise ValueError("encode expects values in [0, 255]; these float images lie in "
                             f"[{lo:.3g}, {hi:.3g}] (scale [0, 1] images by 255, or pass uint8)")
    return pixels.to(device)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
