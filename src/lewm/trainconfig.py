"""The training configuration: one frozen dataclass, and `key=value` overrides of it.

`lewm train --preset NAME --set key=value` starts from a recipe's TrainConfig
(lewm.recipes) and overrides fields; nested model fields are addressed as `model.NAME`.
Imports nothing heavy: the CLI builds its help from it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

from lewm.errors import LewmError
from lewm.model.config import ModelConfig
from lewm.validate import check_numbers
from lewm.worlds import WORLDS

REGULARIZERS = ("sigreg", "none", "vicreg", "ema")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Defaults are the paper's (docs/design.md §1.3)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """the architecture"""
    world: str = "tworoom"
    """the world the data comes from (tworoom, pusht, reacher, cube; used by evaluation)"""
    batch_size: int = 128
    """clips per optimisation step (global, over all data-parallel ranks)"""
    clips_per_window: int = 1
    """clips cut from one window of consecutive frames: a batch is batch_size /
    clips_per_window windows of clip_frames + clips_per_window - 1 frames, each frame encoded
    once for every clip that holds it. The loss is the one of those clips drawn one by one
    (the projector's BatchNorm sees each frame once); the encoder's work per clip falls,
    the clips of a batch are neighbours in time (1: independent clips, the paper's)"""
    steps: int = 10_000
    """optimisation steps (ignored when epochs > 0)"""
    epochs: float = 0.0
    """passes over the training clips: when > 0, the step count is computed from the clips
    the dataset actually serves after the validation split (see `total_steps`)"""
    lr: float = 5e-5
    """AdamW peak learning rate"""
    weight_decay: float = 1e-3
    """AdamW weight decay"""
    warmup_steps: int = 500
    """linear warm-up steps before the cosine decay"""
    min_lr_ratio: float = 0.0
    """the cosine decays to lr * min_lr_ratio"""
    grad_clip: float = 1.0
    """gradient-norm clipping (0: off)"""
    regularizer: str = "sigreg"
    """anti-collapse term: sigreg (LeWM), none (the control: collapses), vicreg (variance +
    covariance penalties) or ema (BYOL-style stop-gradient target from a momentum encoder)"""
    lambd: float = 0.09
    """lambda: SIGReg weight (paper 0.1, authors' code 0.09), on the authors' SIGReg scale
    (about 1.06 per direction for Gaussian embeddings)"""
    rollout_steps: int = 0
    """extra frames predicted autoregressively in the loss: the clip grows by this many
    frames, and the predictor, fed its own predictions from the last history frame on, is
    scored on them too (0: the paper's teacher-forced prediction loss alone)"""
    augment: str = ""
    """perturbations drawn per clip and step (lewm.perturb specs, comma-separated, `none`
    for a clean clip), each clip seen through its own scene; with `invariance`, beside the
    clean clip rather than in its place"""
    invariance: float = 0.0
    """weight of the invariance term: the MSE between each frame's embedding in its
    `augment` scene and its clean embedding (the clean side without gradient), so that the
    encoder learns to discard what the scene adds (0: the augmented clips replace the
    clean ones in the LeWM loss)"""
    camera: str = ""
    """the camera to train on when the data is a LeRobot dataset with several (its video
    feature, e.g. observation.images.top; empty: observation.image, or its only camera)"""
    num_proj: int = 1024
    """M: SIGReg random directions, redrawn every step"""
    sigreg_over: str = "step"
    """the samples SIGReg tests: 'step', each time step's batch of embeddings separately (the
    authors'), or 'clip', every frame of every clip in the batch pooled into one sample"""
    vicreg_var: float = 1.0
    """vicreg: weight of the variance penalty (VICReg's 25:25:1, relative to the prediction)"""
    vicreg_cov: float = 0.04
    """vicreg: weight of the covariance penalty"""
    ema_momentum: float = 0.996
    """ema: momentum of the target encoder (BYOL's 0.996)"""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation (split by episode)"""
    val_every: int = 500
    """steps between validations"""
    val_clips: int = 1024
    """validation clips used at each validation"""
    log_every: int = 25
    """steps between training-metric lines"""
    ckpt_every: int = 1000
    """steps between checkpoints (one is also written at the end and on Ctrl-C)"""
    seed: int = 0
    """seed of initialisation, batches, SIGReg directions and dropout"""
    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda or mps"""
    compile: bool = False
    """torch.compile the training step's model (CUDA)"""
    precision: str = "auto"
    """arithmetic of the training step: auto (bf16 autocast on CUDA, fp32 elsewhere), fp32, or
    bf16 (autocast; on CPUs with AMX it trains the paper model ~2x faster than fp32)"""
    threads: int = 0
    """CPU threads for torch (0: torch's default)"""
    workers: int = 0
    """processes reading training batches ahead (0: one background thread). Each reads every
    workers-th batch from its own handle of the file, so HDF5 reads and decompression run in
    parallel (for 224 px data on a GPU); the batches are the same either way"""

    def __post_init__(self):
        if self.world not in WORLDS:
            raise LewmError(f"unknown world {self.world!r} (choose from {', '.join(WORLDS)})")
        from lewm.data.config import distractor_specs

        distractor_specs(self.augment)
        if self.invariance < 0 or (self.invariance > 0 and not self.augment):
            raise LewmError(f"invariance={self.invariance}: must be >= 0, and needs augment")
        if self.regularizer not in REGULARIZERS:
            raise LewmError(f"unknown regularizer {self.regularizer!r} (choose from "
                            f"{', '.join(REGULARIZERS)})")
        if self.sigreg_over not in ("step", "clip"):
            raise LewmError(f"sigreg_over must be 'step' or 'clip', got {self.sigreg_over!r}")
        for name in ("batch_size", "clips_per_window", "steps", "num_proj", "val_every",
                     "log_every", "ckpt_every", "val_clips"):
            if getattr(self, name) < 1:
                raise LewmError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.clips_per_window:
            raise LewmError(f"batch_size {self.batch_size} is not a multiple of "
                            f"clips_per_window {self.clips_per_window}")
        if not 0 <= self.ema_momentum <= 1:
            raise LewmError(f"ema_momentum must be in [0, 1], got {self.ema_momentum}")
        if not 0 <= self.seed < 2**31:
            raise LewmError(f"seed must be in [0, 2**31), got {self.seed}")
        if not self.epochs >= 0:
            raise LewmError(f"epochs must be >= 0, got {self.epochs}")
        for name in ("rollout_steps", "workers"):
            if getattr(self, name) < 0:
                raise LewmError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise LewmError(f"lr must be > 0, got {self.lr}")
        if self.lambd < 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise LewmError("lambd, weight_decay, grad_clip and warmup_steps must be >= 0")
        if not 0 <= self.val_fraction < 1:
            raise LewmError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise LewmError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise LewmError(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        check_numbers(self)  # what the checks above leave: NaN, inf

    @property
    def clip_frames(self) -> int:
        """Frames per training clip: the history, the frame after it, and the frames of the
        rollout loss."""
        return self.model.history + 1 + self.rollout_steps

    @property
    def batch_windows(self) -> int:
        """Windows read per optimisation step (global): batch_size clips, clips_per_window each."""
        return self.batch_size // self.clips_per_window

    @property
    def window_frames(self) -> int:
        """Frames per training window: clips_per_window clips of clip_frames, one frame apart."""
        return self.clip_frames + self.clips_per_window - 1


def total_steps(cfg: TrainConfig, num_clips: int) -> int:
    """Optimisation steps of a run: `cfg.epochs` passes over `num_clips` training clips at
    `cfg.batch_size` clips per step, or `cfg.steps` when no epochs are set."""
    if cfg.epochs > 0:
        return max(1, math.ceil(cfg.epochs * num_clips / cfg.batch_size))
    return cfg.steps


def parse_value(value: str, tp, key: str):
    """`value` (a command-line string) as type `tp`; a bad one is a LewmError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[...]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value.lower() == "none" else parse_value(value, args[0], key)
    try:
        if tp is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if origin is tuple:
            inner = typing.get_args(tp)[0]
            return tuple(inner(v) for v in value.strip("()[] ").split(",") if v.strip())
        if tp is int:
            return int(float(value)) if float(value).is_integer() else int(value)
        return tp(value)
    except ValueError:
        raise LewmError(f"--set {key}={value}: not a valid {getattr(tp, '__name__', tp)}") from None


def override(cfg, assignments: list[str]):
    """Apply `key=value` assignments (nested fields as `model.key`) to a frozen config. All
    assignments are parsed first and each config is rebuilt once, so fields that are only
    valid together (model.encoder=vit with model.patch_size=8) can be set together."""
    changes: dict = {}
    for item in assignments:
        if "=" not in item:
            raise LewmError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        _collect(cfg, key.split("."), value.strip(), key, changes)
    return _apply(cfg, changes)


def _collect(cfg, path: list[str], value: str, key: str, changes: dict):
    hints = typing.get_type_hints(type(cfg))
    name = path[0]
    if name not in hints:
        names = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise LewmError(f"--set {key}: unknown field {name!r} (fields: {names})")
    if len(path) > 1:
        _collect(getattr(cfg, name), path[1:], value, key, changes.setdefault(name, {}))
    elif dataclasses.is_dataclass(hints[name]):
        raise LewmError(f"--set {key}: {name!r} is a group; set one of its fields ({name}.X=...)")
    else:
        changes[name] = parse_value(value, hints[name], key)


def _apply(cfg, changes: dict):
    return dataclasses.replace(cfg, **{
        name: _apply(getattr(cfg, name), v) if isinstance(v, dict) else v
        for name, v in changes.items()
    })


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> TrainConfig:
    """Rebuild a TrainConfig from `to_dict` output; unknown fields are an error."""
    d = dict(d)
    model = ModelConfig.from_dict(d.pop("model", {}))
    d.pop("plan", None)  # runs before PlanConfig kept their planning here (lewm.recipes)
    try:
        return TrainConfig(model=model, **d)
    except TypeError as e:
        raise LewmError(f"config does not match this version of lewm: {e}") from None
