"""The model's configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from lewm.errors import LewmError
from lewm.validate import check_numbers


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a LeWM model. Defaults are the paper's (docs/design.md §1.2)."""

    encoder: str = "vit"
    """encoder kind: 'vit' (the paper's ViT-Tiny) or 'conv' (a small CNN for CPU presets)"""
    image_size: int = 224
    """encoder input size in pixels (images are resized to it)"""
    patch_size: int = 14
    """ViT patch size"""
    enc_dim: int = 192
    """encoder width (ViT hidden size, or the CNN's output features)"""
    enc_depth: int = 12
    """ViT blocks"""
    enc_heads: int = 3
    """ViT attention heads"""
    enc_mlp: int = 768
    """ViT MLP hidden size"""
    conv_channels: tuple[int, ...] = (32, 64, 128, 128)
    """CNN channels, one stride-2 stage each"""
    conv_patch: int = 0
    """CNN stem: 0 for a stride-2 stage like the others; p > 0 for a ViT-like patch embedding,
    a p x p convolution at stride p (its first channels entry) before the stride-2 stages"""
    conv_blocks: int = 0
    """CNN: residual ConvMixer blocks (depthwise 3x3, pointwise 1x1) on the final map"""
    conv_keypoints: int = 0
    """CNN head: 0 flattens the final map into the linear layer; K > 0 reads K keypoints off
    it instead (a 1x1 convolution to K maps, a spatial softmax over each, the expected x and
    y), so the linear layer sees 2K coordinates"""
    embed_dim: int = 192
    """D: the latent embedding size"""
    proj_hidden: int = 2048
    """hidden size of the projector and pred_proj MLPs (Linear -> BatchNorm1d -> GELU -> Linear)"""
    action_dim: int = 2
    """A: raw action dimension of the world"""
    frameskip: int = 5
    """env steps per action block (the action encoder sees frameskip * A values)"""
    act_channels: int = 10
    """action encoder: channels of its kernel-1 Conv1d"""
    act_hidden: int = 768
    """action encoder: MLP hidden size"""
    history: int = 3
    """frames of context the predictor sees (its temporal position embeddings)"""
    pred_pos_init: str = "normal"
    """init of the predictor's temporal position embeddings: 'normal' N(0, 1), the authors'
    (torch.randn), or 'small' truncated N(0, 0.02^2), as for the ViT's"""
    pred_depth: int = 6
    """predictor blocks"""
    pred_heads: int = 16
    """predictor attention heads"""
    pred_head_dim: int = 64
    """predictor attention head size"""
    pred_mlp: int = 2048
    """predictor MLP hidden size"""
    dropout: float = 0.1
    """predictor dropout"""

    @property
    def conv_stride(self) -> int:
        """The CNN's total downsampling: input pixels per side of one final-map cell."""
        stem = self.conv_patch if self.conv_patch else 2
        return stem * 2 ** (len(self.conv_channels) - 1)

    def __post_init__(self):
        if self.encoder not in ("vit", "conv"):
            raise LewmError(f"model.encoder must be 'vit' or 'conv', got {self.encoder!r}")
        if self.encoder == "vit" and min(self.enc_depth, self.enc_heads, self.patch_size) < 1:
            raise LewmError("model.enc_depth, enc_heads and patch_size must be >= 1")
        if self.encoder == "conv" and (not self.conv_channels or min(self.conv_channels) < 1):
            raise LewmError(f"model.conv_channels must be one or more positive widths, got "
                            f"{self.conv_channels}")
        if self.pred_pos_init not in ("normal", "small"):
            raise LewmError(f"model.pred_pos_init must be 'normal' or 'small', got "
                            f"{self.pred_pos_init!r}")
        if self.encoder == "vit" and self.image_size % self.patch_size:
            raise LewmError(
                f"model.image_size {self.image_size} is not a multiple of model.patch_size "
                f"{self.patch_size}"
            )
        if min(self.conv_patch, self.conv_blocks, self.conv_keypoints) < 0:
            raise LewmError(f"model.conv_patch, conv_blocks and conv_keypoints must be >= 0, "
                            f"got {self.conv_patch}, {self.conv_blocks}, {self.conv_keypoints}")
        if self.encoder == "conv" and self.image_size % self.conv_stride:
            raise LewmError(
                f"model.image_size {self.image_size} must be a multiple of {self.conv_stride} "
                f"for {len(self.conv_channels)} conv stages (conv_patch {self.conv_patch})"
            )
        if self.encoder == "conv" and any(c % 8 for c in self.conv_channels):
            raise LewmError(f"model.conv_channels must be multiples of 8 (GroupNorm), got "
                            f"{self.conv_channels}")
        if self.encoder == "vit" and self.enc_dim % self.enc_heads:
            raise LewmError(f"model.enc_dim {self.enc_dim} is not divisible by enc_heads")
        for name in ("image_size", "embed_dim", "action_dim", "frameskip", "history",
                     "pred_depth", "pred_heads", "pred_head_dim"):
            if getattr(self, name) < 1:
                raise LewmError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise LewmError(f"model.dropout must be in [0, 1), got {self.dropout}")
        for name in ("enc_dim", "proj_hidden", "act_hidden", "act_channels", "pred_mlp"):
            if getattr(self, name) < 1:
                raise LewmError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        check_numbers(self)  # what the checks above leave: NaN, inf

    def rough_parameters(self) -> int:
        """The parameter count to within a few percent (the large matrices only), known before
        any is allocated: what a size that cannot fit is refused by."""
        D, E = self.embed_dim, self.enc_dim
        if self.encoder == "vit":
            enc = self.enc_depth * 12 * E * E + (self.image_size // self.patch_size) ** 2 * E
        else:
            chans = (3, *self.conv_channels)
            enc = sum(9 * a * b for a, b in zip(chans, chans[1:]))
            side = self.image_size // max(1, self.conv_stride)
            flat = 2 * self.conv_keypoints if self.conv_keypoints else chans[-1] * side * side
            enc += flat * E
        hd = self.pred_heads * self.pred_head_dim
        pred = self.pred_depth * (4 * hd * D + 2 * D * self.pred_mlp + 6 * D * D)
        proj = E * self.proj_hidden + 3 * self.proj_hidden * D
        act = self.frameskip * self.action_dim * self.act_channels + (
            self.act_channels + D) * self.act_hidden
        return enc + pred + proj + act

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Rebuild from `dataclasses.asdict` output (JSON lists back to tuples); a field this
        version does not know is an error."""
        if not isinstance(d, dict):
            raise LewmError(f"model config must be a JSON object, got {type(d).__name__}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except TypeError as e:
            raise LewmError(f"model config does not match this version of lewm: {e}") from None
