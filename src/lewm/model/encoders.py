"""Image encoders: the paper's ViT-Tiny and a small CNN for CPU presets.

Both map normalised images (N, 3, S, S) to features (N, enc_dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lewm.model.config import ModelConfig


class ViTBlock(nn.Module):
    """Pre-norm transformer block as in Hugging Face's ViTLayer (LayerNorm eps 1e-12)."""

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        # One fused q/k/v projection: the same 3 * (dim^2 + dim) parameters as separate ones.
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, L, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(N, L, 3, self.heads, C // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (N, nh, L, hs)
        a = F.scaled_dot_product_attention(q, k, v)  # (N, nh, L, hs)
        x = x + self.out(a.transpose(1, 2).reshape(N, L, C))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))  # exact (erf) GELU


class ViTEncoder(nn.Module):
    """ViT with a CLS token and learned position embeddings; returns the final-normed CLS."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim, p = cfg.enc_dim, cfg.patch_size
        self.patch = nn.Conv2d(3, dim, kernel_size=p, stride=p)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        num_patches = (cfg.image_size // p) ** 2
        self.pos = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList(
            ViTBlock(dim, cfg.enc_heads, cfg.enc_mlp) for _ in range(cfg.enc_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.apply(_init_vit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (N, L, C)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos  # (N, 1 + L, C)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])  # (N, C)


def _init_vit(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class MixerBlock(nn.Module):
    """ConvMixer's block at constant resolution: x + depthwise 3x3 (spatial mixing), then a
    pointwise 1x1 (channel mixing); each convolution followed by GELU and GroupNorm."""

    def __init__(self, c: int):
        super().__init__()
        self.spatial = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.GELU(),
                                     nn.GroupNorm(8, c))
        self.channel = nn.Sequential(nn.Conv2d(c, c, 1), nn.GELU(), nn.GroupNorm(8, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel(x + self.spatial(x))


class SpatialSoftmax(nn.Module):
    """Keypoints of a feature map (Levine et al., 2016): a 1x1 convolution to K maps, a softmax
    over each map's positions at a learned temperature, and the expected (x, y) under it, in
    [-1, 1]. Returns (N, 2K). A rigid object's position and orientation are then linear in
    the features: two keypoints on it differ by its heading times their distance."""

    def __init__(self, c_in: int, k: int, side: int):
        super().__init__()
        self.to_maps = nn.Conv2d(c_in, k, 1)
        self.log_temp = nn.Parameter(torch.zeros(()))
        axis = torch.linspace(-1.0, 1.0, side)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        # Derived from the size: not saved, so checkpoints hold learned values only.
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], 1),
                             persistent=False)  # (side * side, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.to_maps(x).flatten(2) / self.log_temp.exp()  # (N, K, side * side)
        return (logits.softmax(-1) @ self.grid).flatten(1)  # (N, 2K)


class ConvEncoder(nn.Module):
    """A small CNN: stride-2 stages (Conv 4x4 -> GroupNorm -> GELU), then a linear layer from
    the flattened final map to enc_dim. Much cheaper than the ViT at 64 px on a CPU.
    With `conv_patch` p > 0 the first stage is a ViT-like patch embedding instead (Conv p x p
    at stride p), which at initialisation keeps every pixel of a patch (a random linear map)
    where stacked 4x4 stages mix and lose them. `conv_blocks` residual blocks then mix the
    final map at its resolution (ConvMixer's: a depthwise 3x3 and a pointwise convolution).
    With `conv_keypoints` K > 0 the linear layer sees K keypoints of the final map
    (`SpatialSoftmax`) instead of the flattened map."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(cfg.conv_channels):
            conv = (nn.Conv2d(c_in, c, cfg.conv_patch, stride=cfg.conv_patch)
                    if i == 0 and cfg.conv_patch else nn.Conv2d(c_in, c, 4, stride=2, padding=1))
            layers += [conv, nn.GroupNorm(8, c), nn.GELU()]
            c_in = c
        layers += [MixerBlock(c_in) for _ in range(cfg.conv_blocks)]
        side = cfg.image_size // cfg.conv_stride
        if cfg.conv_keypoints:
            layers += [SpatialSoftmax(c_in, cfg.conv_keypoints, side)]
            features = 2 * cfg.conv_keypoints
        else:
            layers += [nn.Flatten(1)]
            features = c_in * side * side
        self.net = nn.Sequential(*layers)
        self.fc = nn.Linear(features, cfg.enc_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x))  # (N, enc_dim)


def make_encoder(cfg: ModelConfig) -> nn.Module:
    return ViTEncoder(cfg) if cfg.encoder == "vit" else ConvEncoder(cfg)
