"""Checks every config applies to its own values, generated from its fields: one rule per
type, so a new field is checked without a line of its own. Imports nothing heavy."""

from __future__ import annotations

import dataclasses
import math
import os

from lewm.errors import LewmError


def check_numbers(cfg, prefix: str = "") -> None:
    """Every float field of `cfg` (and every float in its tuples) must be a finite number,
    and every int one that fits 64 bits: NaN and inf are refused in one line naming the
    field, so that no setting silently trains or plans with NaN. Called last in each config's
    `__post_init__`, after its own range checks (nested configs check themselves)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise LewmError(f"{name} must be a finite number, got {v}")
            if isinstance(v, bool) or not isinstance(v, int):
                continue
            if abs(v) >= 2**63:
                raise LewmError(f"{name} is out of range: {v}")


def available_memory() -> int:
    """Bytes of memory free now (8 GB where the system cannot say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_memory(nbytes: int, what: str, hint: str = "") -> None:
    """Refuse up front work that needs more memory than the machine has free, with the
    estimate, rather than dying in the allocator halfway."""
    free = available_memory()
    if nbytes > 0.9 * free:
        raise LewmError(f"{what} needs ~{size_of(nbytes)} of memory, {size_of(free)} "
                        f"available{'; ' + hint if hint else ''}")


def size_of(n: float) -> str:
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**20:.1f} MB"


def check_model_fits(model_cfg, training: bool, what: str) -> None:
    """A model of `model_cfg` must fit: its weights (and, to train it, their gradients and
    AdamW's two moments) in fp32."""
    copies = 4 if training else 1
    check_memory(4 * copies * model_cfg.rough_parameters(), what,
                 "make the model smaller (model.embed_dim, model.enc_dim, ...)")
