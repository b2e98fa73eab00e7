"""A run directory: making it without losing anything, its metrics log, and stopping a run
cleanly on Ctrl-C."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from lewm.checkpoint import find_checkpoint
from lewm.errors import LewmError
from lewm.io import atomic_path
from lewm.locks import exclusive, lock_file


class MetricsLog:
    """metrics.jsonl (always), TensorBoard (when installed) and Weights & Biases (when
    asked for)."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None,
                 wandb_config: dict | None = None):
        """resume_step: a resumed run restarts from this step's checkpoint; rows logged
        after it by the interrupted run (which will be logged again), and a line torn by a
        kill mid-write, are dropped first. wandb_config: log to W&B too, with this config
        (the run's config.json)."""
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        if enabled and resume_step is not None and self.path.exists():
            self._keep_until(resume_step)
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # TensorBoard is an optional extra: lewm[tensorboard]
                self.tb = None
        self.wandb = wandb_run(run_dir, wandb_config) if enabled and wandb_config else None

    def _keep_until(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                kept.append(line)
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept))

    def write(self, split: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{split}/{k}": v for k, v in values.items()}, step=step)

    def close(self):
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def wandb_mode() -> str:
    """WANDB_MODE when set; else online only with credentials (an API key in the
    environment or a `wandb login`), offline otherwise: never a login prompt, and runs
    made without a network sync later with `wandb sync RUN/wandb/offline-run-*`."""
    import os

    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "online" if "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


def wandb_run(run_dir: Path, config: dict):
    """A W&B run named after the run directory, its files under RUN/wandb; a resumed run
    continues the same W&B run (its id kept in RUN/wandb-id)."""
    try:
        import wandb
    except ImportError:
        raise LewmError("--log wandb needs the wandb package: pip install 'lewm[wandb]'"
                        ) from None
    import os
    import secrets

    id_file = run_dir / "wandb-id"
    run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)
    id_file.write_text(run_id + "\n")
    try:
        return wandb.init(project=os.environ.get("WANDB_PROJECT", "lewm"), name=run_dir.name,
                          id=run_id, resume="allow", dir=str(run_dir), config=config,
                          mode=wandb_mode(), settings=wandb.Settings(silent=True))
    except Exception as e:  # wandb raises its own error types for auth and network
        raise LewmError(f"--log wandb: W&B could not start ({type(e).__name__}: {e}); set "
                        "WANDB_MODE=offline to log without a network") from None


# What lewm writes in a run directory (the run, its evaluations, analyses and figures): the
# only files `--force` replaces. Anything else there (a dataset, notes) is kept.
RUN_OUTPUTS = ("config.json", "metrics.jsonl", "curves.png", "checkpoint", "checkpoint.tmp",
               "checkpoint.old", "tensorboard", "probe.json", "probe.png", "surprise.json",
               "surprise.png", "decode.json", "decode.png", "decode_rollout.gif",
               "decoder.json", "decoder.safetensors", "wandb", "wandb-id")
RUN_OUTPUT_PATTERNS = ("eval*.json", "eval*.png", "eval*_episode*.gif")


def run_outputs(out: Path) -> list[Path]:
    """The files and folders in `out` that a lewm run writes, by name."""
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    for pattern in RUN_OUTPUT_PATTERNS:
        found += sorted(out.glob(pattern))
    return found


def written_by_lewm(path: Path) -> bool:
    """Whether a file or folder with a lewm output's name holds what lewm writes there (its
    JSON records the lewm version; a checkpoint holds weights), so that a user's own
    `config.json` is never taken for a run's."""
    if path.is_dir():
        return path.name in ("tensorboard", "wandb") or (path / "model.safetensors").exists()
    if path.suffix in (".json", ".jsonl"):
        try:
            first = path.read_text().splitlines()[0] if path.suffix == ".jsonl" else \
                path.read_text()
            record = json.loads(first)
        except (OSError, IndexError, ValueError):
            return False
        return isinstance(record, dict) and any(k in record for k in ("lewm_version",
                                                                      "version", "split"))
    return True  # figures and GIFs: by name


def prepare_run_dir(out, force: bool, resume: bool, resumable: bool = True) -> Path:
    """Create the run directory `out`, or with `force` clear the outputs of an earlier run
    there (only the files lewm writes, see RUN_OUTPUTS; anything else is kept and named).
    `resumable`: whether the error for an existing run may suggest `--resume`."""
    out = Path(out)
    if resume:
        find_checkpoint(out)
        return out
    if out.exists() and not out.is_dir():
        raise LewmError(f"{out}: is a file, not a directory")
    occupied = out.exists() and any(p.name != lock_file(out).name for p in out.iterdir())
    for path in replaceable_outputs(out, force, resumable):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if occupied:
        kept = sorted(p.name for p in out.iterdir() if p.name != lock_file(out).name)
        if kept:
            print(f"{out}: replaced the earlier run, kept {', '.join(kept)}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def replaceable_outputs(out: Path, force: bool, resumable: bool = False) -> list[Path]:
    """The outputs of an earlier run in `out` that `--force` replaces; without `force` an
    occupied directory is refused, and so, always, is a file with a run output's name that
    lewm did not write."""
    if not out.exists() or not any(p.name != lock_file(out).name for p in out.iterdir()):
        return []
    outputs = run_outputs(out)
    if not force:
        hint = ", or --resume to continue its training" if resumable and outputs else ""
        raise LewmError(f"{out}: already exists (pass --force to replace its run{hint})")
    foreign = [p for p in outputs if not written_by_lewm(p)]
    if foreign:
        raise LewmError(f"{foreign[0]}: not written by lewm; refusing to replace it (move "
                        "it away or choose another directory)")
    return outputs


@contextmanager
def writing(run_dir, output: str, what: str):
    """Hold the lock of a run's `output` (beside it, in the run directory) while a verb makes
    it: a second writer of the same output is refused in one line, and the existence check
    of `load_run_model` inside holds until the output is written. A run directory that is
    not there is left alone (loading names the problem)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        yield
        return
    with exclusive(run_dir / output, what):
        yield


def load_run_model(run_dir, outputs: tuple[str, ...], force: bool, device: str = "auto"):
    """The model of a trained run, for a verb that writes `outputs` into it (evaluate, probe,
    surprise, decode): refuses existing outputs without `force` before any work, then loads it
    (its `card` names the world, the image size, the statistics and the data)."""
    from lewm.checkpoint import load_model
    from lewm.devices import resolve_device
    from lewm.io import check_output

    run_dir = Path(run_dir)
    find_checkpoint(run_dir)
    for name in outputs:
        check_output(run_dir / name, force)
    return load_model(run_dir, device=resolve_device(device))
