"""Probing the latent space for physical quantities (docs/design.md §1.5; arXiv 2603.19312
§5.1, Table 1, App. F.2).

Frozen embeddings of single frames -> the world's physical state, with a linear probe
(closed-form ridge) and a small MLP, trained on frames of the run's training episodes and
scored on its held-out validation episodes (split by episode, as the world model's).
Metrics: MSE on standardised targets and Pearson r per quantity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lewm import __version__
from lewm.data.clips import EpisodeData, held_out_split
from lewm.data.hdf5 import check_world
from lewm.errors import LewmError
from lewm.io import write_json
from lewm.model.embed import embed_frames
from lewm.rundir import load_run_model, writing
from lewm.worlds import WORLDS, get_world


def targets(world: str, lowdim: dict, rows: np.ndarray, path) -> dict[str, np.ndarray]:
    """Each probed quantity of `world` (its declaration in lewm.worlds) at `rows`:
    name -> (len(rows), k) float32. An angle is probed as (sin, cos), continuous where the
    angle wraps, so that a linear probe can fit it."""
    out = {}
    for name, q in get_world(world).quantities.items():
        if q.source not in lowdim:
            raise LewmError(f"{path}: has no {q.source!r} column to probe {name} from")
        x = lowdim[q.source][rows][:, list(q.columns)].astype(np.float64)
        if q.angle:
            x = np.concatenate([np.sin(x), np.cos(x)], 1)
        out[name] = x.astype(np.float32)
    return out


@torch.no_grad()
def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float = 1e-3):
    """Closed-form ridge regression with a bias: returns (W (D, k), b (k,))."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = (x - xm).double(), (y - ym).double()
    A = xc.T @ xc + alpha * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    W = torch.linalg.solve(A, xc.T @ yc).float()
    return W, ym - xm @ W


def fit_mlp(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 1500,
            hidden: int = 256) -> torch.nn.Module:
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                              torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.AdamW(mlp.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (256,), generator=gen)
        loss = torch.nn.functional.mse_loss(mlp(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return mlp.eval()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def probe(run_dir, data_path=None, max_rows: int = 20_000, seed: int = 0,
          force: bool = False, device: str = "auto") -> dict:
    """Fit and score the probes; writes probe.json and probe.png in the run directory."""
    with writing(run_dir, "probe.json", "probed"):
        return _probe(run_dir, data_path, max_rows, seed, force, device)


def _probe(run_dir, data_path=None, max_rows: int = 20_000, seed: int = 0,
           force: bool = False, device: str = "auto") -> dict:
    run_dir = Path(run_dir)
    out = run_dir / "probe.json"
    model = load_run_model(run_dir, (out.name,), force, device)
    card = model.card
    world = card.world
    if world not in WORLDS or not WORLDS[world].quantities:
        raise LewmError(f"no probe targets are defined for world {world!r}")
    data_path = data_path or card.data["path"]
    data = EpisodeData(data_path, camera=card.data.get("camera"))
    check_world(data_path, data.attrs, model.card.world, model.card.image_size,
                data.image_size[0])
    train_eps, val_eps = held_out_split(card.data, data.num_episodes, seed)
    rng = np.random.default_rng(seed)
    rows = {name: data.sample_rows(eps, max_rows, rng)
            for name, eps in (("train", train_eps), ("test", val_eps))}
    per_split = {k: targets(world, data.lowdim, r, data_path) for k, r in rows.items()}
    emb = {k: embed_frames(model, data.pixels, r).cpu() for k, r in rows.items()}
    widths = {q: v.shape[1] for q, v in per_split["train"].items()}
    y = {k: torch.from_numpy(np.concatenate(list(t.values()), 1)) for k, t in per_split.items()}
    mu, sd = y["train"].mean(0), y["train"].std(0).clamp_min(1e-6)
    ys = {k: (v - mu) / sd for k, v in y.items()}  # standardised targets
    xm, xs = emb["train"].mean(0), emb["train"].std(0).clamp_min(1e-6)
    xn = {k: (v - xm) / xs for k, v in emb.items()}

    W, b = ridge(xn["train"], ys["train"])
    preds = {"linear": (xn["test"] @ W + b).numpy()}
    mlp = fit_mlp(xn["train"], ys["train"], seed)
    with torch.no_grad():
        preds["mlp"] = mlp(xn["test"]).numpy()
    truth = ys["test"].numpy()
    results: dict = {}
    for kind, p in preds.items():
        per = {}
        i = 0
        for q, width in widths.items():
            sl = slice(i, i + width)
            per[q] = {"mse": float(((p[:, sl] - truth[:, sl]) ** 2).mean()),
                      "r": float(np.mean([pearson(p[:, j], truth[:, j])
                                          for j in range(sl.start, sl.stop)]))}
            i += width
        results[kind] = per
    result = {"world": world, "probes": results, "train_rows": len(rows["train"]),
              "test_rows": len(rows["test"]), "test_episodes": len(val_eps),
              "data": str(data_path), "checkpoint_step": card.step,
              "version": __version__, "config": card.train}
    write_json(out, result)
    from lewm.plots import plot_probe

    names = [f"{q}[{j}]" for q, width in widths.items() for j in range(width)]
    plot_probe(truth, preds, names, run_dir / "probe.png")
    return result
