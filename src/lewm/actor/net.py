"""The actor network, and where a run keeps it (RUN/actor/: actor.safetensors + actor.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from lewm.errors import LewmError

ACTOR_DIR = "actor"
"""the actor's folder in a run directory"""


class Actor(nn.Module):
    """(z, z_prev, z_goal) (b, D) each -> the next action block (b, blk), z-scored as the
    world model's. The inputs are the current embedding, the goal's offset from it (the goal
    intent) and the last block's motion z - z_prev (the velocity one frame cannot show)."""

    def __init__(self, embed_dim: int, block_dim: int, hidden: int = 512, depth: int = 3,
                 gaussian: bool = False):
        super().__init__()
        layers, width = [], 3 * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        # A Gaussian actor also predicts each value's log-std (trained by its likelihood);
        # it acts with the mean either way.
        self.head = nn.Linear(width, 2 * block_dim if gaussian else block_dim)
        self.embed_dim, self.block_dim, self.gaussian = embed_dim, block_dim, gaussian

    def forward(self, z, z_prev, goal):
        return self.distribution(z, z_prev, goal)[0]

    def distribution(self, z, z_prev, goal) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean (b, blk), log-std (b, blk), or None for a deterministic actor)."""
        out = self.head(self.body(torch.cat([z, goal - z, z - z_prev], dim=-1)))
        if not self.gaussian:
            return out, None
        mean, log_std = out.split(self.block_dim, -1)
        return mean, log_std.clamp(-5.0, 2.0)


def actor_dir(run_dir) -> Path:
    return Path(run_dir) / ACTOR_DIR


def load_actor(run_dir, model_sha256: str | None, device="cpu") -> tuple[Actor, dict]:
    """The run's actor and its actor.json; one line naming `lewm train-actor` when the run has
    none, and when it was trained on another world model than `model_sha256`."""
    from safetensors.torch import load

    where = actor_dir(run_dir)
    meta_path, weights = where / "actor.json", where / "actor.safetensors"
    if not meta_path.exists() and not weights.exists():
        raise LewmError(f"{run_dir}: has no actor; train one with `lewm train-actor {run_dir}`")
    try:
        meta = json.loads(meta_path.read_text())
        blob = weights.read_bytes()
        if meta.get("sha256") != hashlib.sha256(blob).hexdigest():
            raise LewmError(f"{weights}: damaged (its SHA-256 differs from actor.json's); "
                            f"rerun `lewm train-actor {run_dir} --force`")
        net = Actor(meta["embed_dim"], meta["block_dim"], meta["config"]["hidden"],
                    meta["config"]["depth"], meta["config"].get("loss") == "gaussian")
        net.load_state_dict(load(blob))
    except FileNotFoundError as e:
        raise LewmError(f"{where}: incomplete actor ({Path(e.filename).name} is missing; rerun "
                        f"`lewm train-actor {run_dir} --force`)") from None
    except LewmError:
        raise
    except Exception as e:  # noqa: BLE001  (json, safetensors and torch raise many types)
        raise LewmError(f"{where}: cannot read its actor ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:120]}); rerun `lewm train-actor "
                        f"{run_dir} --force`") from None
    if model_sha256 is not None and meta.get("model_sha256") != model_sha256:
        raise LewmError(f"{meta_path}: this actor was trained on another world model (not this "
                        f"run's checkpoint); rerun `lewm train-actor {run_dir} --force`")
    return net.to(device).eval(), meta
