"""Self-describing checkpoints.

A checkpoint is a directory: `config.json` (the full training config, the data it saw, the
step and the lewm version), `model.safetensors` (the uncompiled module's weights and
buffers; its SHA-256 is in config.json and checked on every load, so a damaged file is
refused instead of evaluated), `stats.json` (the normalisation statistics) and `resume.pt`
(optimizer, scheduler, RNG: only for `lewm train --resume`). It is written beside the old
one and swapped in by renames, so a crash leaves either the old or the new checkpoint,
never a mix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from lewm import __version__
from lewm.errors import STORAGE_ERRNOS, LewmError
from lewm.model import LeWM, ModelCard, ModelConfig
from lewm.model.normalize import ZScore

FORMAT = 1
FILES = ("config.json", "model.safetensors", "stats.json")


def save_checkpoint(ckpt_dir, model: LeWM, meta: dict, stats: dict, resume: dict | None = None):
    """Write a checkpoint directory atomically (see the module docstring)."""
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    old = ckpt_dir.with_name(ckpt_dir.name + ".old")
    if not ckpt_dir.exists() and _complete(old):
        old.rename(ckpt_dir)  # an earlier swap was cut between its renames: restore it first
    try:
        _write(tmp, model, meta, stats, resume)
    except Exception as e:  # a full disk, a read-only place: the previous checkpoint is kept
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _storage_fault(e)
        if cause is None:
            raise
        raise LewmError(f"{ckpt_dir}: checkpoint not written ({cause}); the previous "
                        "checkpoint, if any, is unchanged") from None
    shutil.rmtree(old, ignore_errors=True)
    if ckpt_dir.exists():
        ckpt_dir.rename(old)
    tmp.rename(ckpt_dir)
    shutil.rmtree(old, ignore_errors=True)


def _storage_fault(e: Exception) -> str | None:
    """The disk's fault behind a failed write, if it is one. safetensors and torch.save
    report them in their own exception types, with the OS message inside."""
    if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        return e.strerror
    for text in ("No space left on device", "Read-only file system", "Permission denied",
                 "Disk quota exceeded"):
        if text in str(e):
            return text
    if "failed writing" in str(e) or "unexpected pos" in str(e):  # torch.save's write errors
        return "write failed: is the disk full?"
    return None


def _write(tmp: Path, model: LeWM, meta: dict, stats: dict, resume: dict | None) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, tmp / "model.safetensors", metadata={"lewm_version": __version__})
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
    config = {"format": FORMAT, "lewm_version": __version__, **meta, "model_sha256": digest}
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if resume is not None:
        torch.save(resume, tmp / "resume.pt")


def find_checkpoint(path) -> Path:
    """A checkpoint directory given itself or the run directory holding it."""
    path = Path(path)
    if not path.exists():
        raise LewmError(f"{path}: no such directory")
    if (path / "checkpoint").is_dir():
        path = path / "checkpoint"
    elif _complete(path / "checkpoint.old"):
        # A crash (or a reader's bad luck) between the swap's two renames: the previous
        # checkpoint, complete, is waiting under its old name.
        path = path / "checkpoint.old"
    elif not (path / "config.json").exists() and not (path / "model.safetensors").exists():
        raise LewmError(f"{path}: no checkpoint here (train one with `lewm train`)")
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise LewmError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    return path


def _complete(ckpt: Path) -> bool:
    return ckpt.is_dir() and all((ckpt / f).exists() for f in FILES)


def read_meta(path) -> dict:
    """The checkpoint's config.json, checked for a format this version reads."""
    ckpt = find_checkpoint(path)
    try:
        meta = json.loads((ckpt / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LewmError(f"{ckpt / 'config.json'}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise LewmError(f"{ckpt / 'config.json'}: not a checkpoint config (a JSON object "
                        f"expected, found {type(meta).__name__})")
    for key in ("train", "data"):
        if not isinstance(meta.get(key), dict):
            raise LewmError(f"{ckpt / 'config.json'}: damaged (no {key!r} section)")
    if meta.get("format") != FORMAT:
        raise LewmError(
            f"{ckpt}: checkpoint format {meta.get('format')!r} (lewm "
            f"{meta.get('lewm_version', '?')}) is not readable by lewm {__version__} "
            f"(format {FORMAT})"
        )
    return meta


def load_model(path, device="cpu", attempts: int = 10) -> LeWM:
    """The model of a checkpoint (or run) directory, in eval mode, with its `model.card`
    (world, statistics, configs; `card.meta` is the checkpoint's config.json) set. Needs the
    model code alone: a checkpoint of a world whose extra is not installed still loads. A run
    that is writing a new checkpoint may swap the files mid-read (then config.json's checksum
    and the weights read disagree, or a file is gone); the read is tried again, and only a
    fault that persists (a damaged file) is reported."""
    import time

    for attempt in range(attempts):
        try:
            return _load_model(path, device)
        except (FileNotFoundError, LewmError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def _load_model(path, device) -> LeWM:
    ckpt = find_checkpoint(path)
    meta = read_meta(ckpt)
    train = meta.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("model"), dict):
        raise LewmError(f"{ckpt / 'config.json'}: has no train.model section")
    model = LeWM(ModelConfig.from_dict(train["model"]))
    blob = (ckpt / "model.safetensors").read_bytes()
    expected = meta.get("model_sha256")  # absent in checkpoints written before it was kept
    if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
        raise LewmError(f"{ckpt / 'model.safetensors'}: damaged (its SHA-256 differs from the "
                        "one recorded in config.json when it was written)")
    try:
        state = load_safetensors(blob)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise LewmError(f"{ckpt / 'model.safetensors'}: cannot be read ({e})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = str(e).splitlines()[1:2]
        raise LewmError(f"{ckpt}: weights do not match the config: {detail}") from None
    if missing or unexpected:
        raise LewmError(
            f"{ckpt}: weights do not match the config (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); was it written by another version of lewm?"
        )
    try:
        raw = json.loads((ckpt / "stats.json").read_text())
        stats = ZScore.per_column(raw)
        stats["action"]  # noqa: B018 (the one entry every use needs)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as e:
        raise LewmError(f"{ckpt / 'stats.json'}: damaged ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:80] if str(e) else 'no action statistics'})"
                        ) from None
    try:
        model.card = ModelCard.from_checkpoint(meta, stats)
    except (KeyError, TypeError, ValueError) as e:
        raise LewmError(f"{ckpt / 'config.json'}: damaged (the data section's "
                        f"{type(e).__name__}: {e})") from None
    recorded = meta["data"].get("world")
    if recorded is not None and recorded != train.get("world", recorded):
        raise LewmError(f"{ckpt / 'config.json'}: names world {train.get('world')!r} but was "
                        f"trained on {recorded!r} data; it is damaged or was edited")
    bad = next((k for k, v in state.items() if v.is_floating_point()
                and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise LewmError(f"{ckpt / 'model.safetensors'}: tensor {bad} holds NaN or inf")
    return model.to(device).eval()
