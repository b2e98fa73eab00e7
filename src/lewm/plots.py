"""Figures written next to the JSON numbers (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

from lewm.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows.setdefault(row["split"], []).append(row)
    return rows


def plot_training(metrics_path, out_png) -> None:
    """Learning curves: prediction loss (train, val), SIGReg, and validation collapse
    diagnostics (effective rank, min per-dimension std)."""
    plt = _pyplot()
    rows = read_metrics(metrics_path)
    train, val = rows.get("train", []), rows.get("val", [])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    series = lambda rs, k: ([r["step"] for r in rs if k in r], [r[k] for r in rs if k in r])
    ax = axes[0]
    ax.plot(*series(train, "pred_loss"), label="train")
    ax.plot(*series(val, "pred_loss"), "o-", label="validation")
    ax.set(title="prediction loss (MSE)", xlabel="step", yscale="log")
    ax.legend()
    ax = axes[1]
    ax.plot(*series(train, "sigreg"), label="train")
    ax.plot(*series(val, "sigreg"), "o-", label="validation")
    ax.set(title="SIGReg", xlabel="step", yscale="log")
    ax.legend()
    ax = axes[2]
    ax.plot(*series(val, "effective_rank"), "o-", label="effective rank")
    ax.set(title="validation embeddings", xlabel="step", ylabel="effective rank")
    ax2 = ax.twinx()
    ax2.plot(*series(val, "std_min"), "s--", color="tab:red", label="min per-dim std")
    ax2.set_ylabel("min per-dim std")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_eval(result: dict, out_png) -> None:
    """Success against the random floor and the already-solved fraction, and when episodes
    were solved."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    names = ["LeWM (CEM)", "random policy", "solved at start"]
    values = [result["success_rate"], result["random_success_rate"], result["solved_at_start"]]
    lo, hi = result["success_ci95"]
    err = [[values[0] - lo, 0, 0], [hi - values[0], 0, 0]]
    ax.bar(names, values, yerr=err, color=["tab:blue", "tab:gray", "tab:olive"], capsize=4)
    for x, v in enumerate(values):
        ax.text(x, v + 0.02, f"{100 * v:.0f}%", ha="center")
    ax.set(ylim=(0, 1.1), ylabel="fraction of episodes",
           title=f"{result['world']}: {result['episodes_evaluated']} episodes")
    ax = axes[1]
    steps = [e["success_step"] for e in result["episodes"] if e["success"]]
    ax.hist(steps, bins=range(0, result["config"]["eval"]["budget"] + 5, 5), color="tab:blue")
    ax.set(xlabel="env steps to success", ylabel="episodes",
           title=f"plan {result['plan_ms_mean']:.0f} ms per episode (mean)")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
