"""What a collection is made of: `CollectConfig`. Imports nothing heavy: the CLI builds its
flags from it."""

from __future__ import annotations

from dataclasses import dataclass

from lewm.errors import LewmError
from lewm.validate import check_numbers
from lewm.worlds import WORLDS

COMPRESSIONS = ("none", "lzf", "gzip", "blosc")
"""image compressions an episode file may be written with (`CollectConfig.compression`)"""


@dataclass(frozen=True)
class CollectConfig:
    world: str = "tworoom"
    """which world (tworoom, pusht, reacher, cube)"""
    episodes: int = 200
    """number of episodes"""
    steps: int = 100
    """actions per episode (each episode has steps + 1 rows, the last with a NaN action)"""
    policy: str | None = None
    """collection policy (None: the world's default, its `default_policy` in lewm.worlds)"""
    noise_std: float | None = None
    """a scripted policy's Gaussian action noise (None: its default, 2.0 for Two-Room)"""
    size: int = 64
    """image size in pixels"""
    seed: int = 0
    """seed of the whole collection"""
    num_envs: int = 8
    """environments stepped side by side (in each worker)"""
    workers: int = 1
    """processes collecting side by side, each with num_envs environments (the MuJoCo worlds
    render in software on one core each: use one worker per free core)"""
    distractors: str = ""
    """messy training data: a comma-separated list of perturbations NAME[:LEVEL] (those of
    lewm eval --perturb, and `none` for a clean episode); each episode is rendered through
    one of them, drawn uniformly, with its own scene (the state, actions and success are
    the clean world's)"""
    compression: str = "none"
    """image compression: none, lzf, gzip or blosc (Blosc lz4, as the authors' datasets;
    readable with hdf5plugin, the `authors` extra)"""

    def __post_init__(self):
        if self.world not in WORLDS:
            raise LewmError(f"unknown world {self.world!r} (choose from {sorted(WORLDS)})")
        for name in ("episodes", "steps", "num_envs", "workers"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise LewmError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise LewmError(f"--size must be >= 16, got {self.size}")
        if self.compression not in COMPRESSIONS:
            raise LewmError(f"--compression must be one of {', '.join(COMPRESSIONS)}, got "
                            f"{self.compression!r}")
        if self.noise_std is not None and not 0 <= self.noise_std < float("inf"):
            raise LewmError(f"--noise-std must be finite and >= 0, got {self.noise_std}")
        if not 0 <= self.seed < 2**63:
            raise LewmError(f"--seed must be in [0, 2**63), got {self.seed}")
        distractor_specs(self.distractors)
        check_numbers(self)  # what the checks above leave: NaN, inf


def distractor_specs(spec: str) -> list[str]:
    """`--distractors` as a list of perturbation specs (`none` kept as is); one-line errors
    for unknown names or levels."""
    if not spec:
        return []
    from lewm.perturbspec import parse

    specs = [s.strip() for s in spec.split(",")]
    return [s if s == "none" else parse(s).spec for s in specs]
