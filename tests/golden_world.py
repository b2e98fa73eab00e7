"""A synthetic world and a fixed model for golden tests of the planner: no physics engine,
so every recipe's plan (whatever its world) runs in a fraction of a second."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.spaces import Box

from lewm.model import LeWM
from lewm.model.card import ModelCard
from lewm.model.config import ModelConfig
from lewm.model.normalize import ZScore

SIZE = 32


class PointWorld:
    """A point in [-1, 1]^A, moved by 0.05 * action per step, drawn as a blob whose place is
    its first two coordinates and whose colour its others: frames depend on every action."""

    def __init__(self, action_dim: int, seed: int):
        rng = np.random.default_rng(seed)
        self.A = action_dim
        self.state = rng.uniform(-0.8, 0.8, action_dim)
        self.goal = rng.uniform(-0.8, 0.8, action_dim)
        self.action_space = Box(-1.0, 1.0, (action_dim,), np.float32)
        self.taken: list[np.ndarray] = []

    def render(self, s: np.ndarray) -> np.ndarray:
        yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) * 2 - 1
        blob = np.exp(-((xx - s[0]) ** 2 + (yy - s[1 % self.A]) ** 2) / 0.05)
        tint = [0.5 + 0.5 * np.tanh(s[(2 + c) % self.A]) for c in range(3)]
        return (255 * blob[..., None] * np.asarray(tint)).astype(np.uint8)

    def first_obs(self) -> np.ndarray:
        return self.render(self.state)

    def goal_pixels(self) -> np.ndarray:
        return self.render(self.goal)

    def success(self) -> bool:
        return bool(np.linalg.norm(self.state - self.goal) < 0.05)

    strict_success = success  # one criterion, first hit: episodes stop where they always did
    strict_hold = 1

    def step(self, a):
        a = np.asarray(a, np.float64)
        self.taken.append(a.copy())
        self.state = np.clip(self.state + 0.05 * a, -1, 1)
        return self.render(self.state), 0.0, self.success(), False, {}


def fixed_model(action_dim: int, history: int = 3) -> LeWM:
    """A small untrained LeWM with seeded weights (its AdaLN made non-zero, so actions
    matter) and a card with fixed action statistics."""
    cfg = ModelConfig(encoder="conv", image_size=SIZE, conv_channels=(8, 16, 16), enc_dim=32,
                      embed_dim=32, proj_hidden=64, act_hidden=32, pred_depth=2, pred_heads=2,
                      pred_head_dim=16, pred_mlp=64, dropout=0.0, pred_pos_init="small",
                      history=history, action_dim=action_dim)
    torch.manual_seed(0)
    model = LeWM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.predictor.blocks:
            w = block.ada[1].weight
            w.copy_(0.2 * torch.randn(w.shape, generator=g))
    stats = {"action": ZScore(np.full(action_dim, 0.1, np.float32),
                              np.full(action_dim, 0.5, np.float32))}
    model.card = ModelCard(world="tworoom", image_size=SIZE, stats=stats,
                           train={"world": "tworoom"}, data={"path": ""})
    return model

