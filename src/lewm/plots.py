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


def _save(fig, out_png, dpi: int) -> None:
    """Lay out the figure, write it as a PNG through a temporary file, then free it."""
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    _pyplot().close(fig)


def read_metrics(path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # blank, or torn by a kill mid-write
        if isinstance(row, dict) and "split" in row:
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
    _save(fig, out_png, dpi=110)


def plot_eval(result: dict, out_png) -> None:
    """Success against the random floor and the already-solved fraction under each criterion
    (the strict one when the result has it), and when episodes were solved."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    groups = [("authors'", result)] + ([("strict", result["strict"])] if "strict" in result
                                       else [])
    kinds = [("success_rate", "LeWM", "tab:blue"), ("random_success_rate", "random policy",
             "tab:gray"), ("solved_at_start", "solved at start", "tab:olive")]
    width = 0.8 / len(kinds)
    for j, (key, label, colour) in enumerate(kinds):
        xs = [g + (j - 1) * width for g in range(len(groups))]
        values = [r[key] for _, r in groups]
        err = None
        if key == "success_rate":
            err = [[max(0.0, v - r["success_ci95"][0]) for v, (_, r) in zip(values, groups)],
                   [max(0.0, r["success_ci95"][1] - v) for v, (_, r) in zip(values, groups)]]
        ax.bar(xs, values, width, yerr=err, color=colour, capsize=4, label=label)
        for x, v in zip(xs, values):
            ax.text(x, v + 0.02, f"{100 * v:.0f}%", ha="center", fontsize=8)
    ax.set_xticks(range(len(groups)), [f"{name} criterion" for name, _ in groups])
    ax.set(ylim=(0, 1.15), ylabel="fraction of episodes",
           title=f"{result['world']}: {result['episodes_evaluated']} episodes")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    steps = [e["success_step"] for e in result["episodes"] if e["success"]]
    # The budget used, not the one asked for: 0 asks for the goal set's own.
    ax.hist(steps, bins=range(0, result["budget"] + 5, 5), color="tab:blue")
    ax.set(xlabel="env steps to success", ylabel="episodes",
           title=f"plan {result['plan_ms_mean']:.0f} ms per episode (mean)")
    _save(fig, out_png, dpi=110)


def plot_probe(truth, preds: dict, names: list[str], out_png) -> None:
    """Predicted against true (standardised) values, one panel per probe and component."""
    plt = _pyplot()
    kinds = list(preds)
    fig, axes = plt.subplots(len(kinds), len(names), figsize=(3.2 * len(names), 3.2 * len(kinds)),
                             squeeze=False)
    for i, kind in enumerate(kinds):
        for j, name in enumerate(names):
            ax = axes[i][j]
            ax.scatter(truth[:, j], preds[kind][:, j], s=2, alpha=0.3)
            lim = [truth[:, j].min(), truth[:, j].max()]
            ax.plot(lim, lim, "k--", lw=0.8)
            ax.set(title=f"{kind}: {name}", xlabel="true (standardised)", ylabel="predicted")
    _save(fig, out_png, dpi=100)


def plot_surprise(curves: dict, event: int, out_png, pictures: dict | None = None) -> None:
    """Mean surprise (prediction error) per frame for each variant, with the event marked.
    pictures: variant -> (observed frame, decoded prediction) at the event, shown beneath
    when the run has a decoder."""
    import numpy as np

    plt = _pyplot()
    if pictures:
        fig = plt.figure(figsize=(6.5, 6.4))
        grid = fig.add_gridspec(3, 2 * len(pictures), height_ratios=[3.8, 1.3, 0.1])
        ax = fig.add_subplot(grid[0, :])
        for i, (name, (seen, expected)) in enumerate(pictures.items()):
            for j, (img, what) in enumerate(((seen, "observed"), (expected, "predicted"))):
                sub = fig.add_subplot(grid[1, 2 * i + j])
                sub.imshow(img)
                sub.set_axis_off()
                sub.set_title(f"{name}\n{what}", fontsize=7)
    else:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, c in curves.items():
        t = np.arange(1, c.shape[1])
        m = np.nanmean(c[:, 1:], 0)
        se = np.nanstd(c[:, 1:], 0) / np.sqrt(len(c))
        ax.plot(t, m, "o-", label=name)
        ax.fill_between(t, m - se, m + se, alpha=0.2)
    ax.axvline(event, color="k", ls="--", lw=0.8, label="event")
    ax.set(xlabel="frame (action blocks)", ylabel="surprise ||pred - z||^2", yscale="log",
           title="prediction error along trajectories")
    ax.legend()
    _save(fig, out_png, dpi=110)


def plot_ablation(result: dict, out_png) -> None:
    """Collapse diagnostics over training per regulariser, and the final outcomes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for row in result["rows"]:
        steps = [c["step"] for c in row["curve"]]
        for ax, key in zip(axes[:2], ("effective_rank", "rank_abs")):
            ax.plot(steps, [c[key] for c in row["curve"]], "o-", label=row["regularizer"])
        axes[2].plot(steps, [max(c["std_min"], 1e-8) for c in row["curve"]], "o-",
                     label=row["regularizer"])
    D = result["embed_dim"]
    axes[0].set(title=f"effective rank (scale-free, of D = {D})", xlabel="step")
    axes[1].set(title=f"directions with std >= 0.01 (of D = {D})", xlabel="step")
    axes[2].set(title="min per-dim std", xlabel="step", yscale="log")
    axes[0].legend()
    names = [r["regularizer"] for r in result["rows"]]
    x = range(len(names))
    axes[3].bar([i - 0.2 for i in x], [r["success_rate"] for r in result["rows"]], 0.4,
                label="planning success")
    axes[3].bar([i + 0.2 for i in x], [max(r["probe_r_linear"], 0) for r in result["rows"]], 0.4,
                label="linear probe r")
    axes[3].set(xticks=list(x), xticklabels=names, ylim=(0, 1.05), title="outcomes")
    axes[3].legend(loc="lower right")
    _save(fig, out_png, dpi=110)


def plot_decode(real, decoded, out_png) -> None:
    """Held-out frames (top row) over their decoded embeddings (bottom row), uint8 images."""
    plt = _pyplot()
    n = len(real)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    for j in range(n):
        for i, (row, title) in enumerate(((real, "held-out frame"), (decoded, "decoded"))):
            axes[i][j].imshow(row[j])
            axes[i][j].set_axis_off()
            if j == 0:
                axes[i][j].set_title(title, fontsize=8, loc="left")
    _save(fig, out_png, dpi=100)


def plot_actor(metrics: list[dict], out_png) -> None:
    """The actor's training and held-out loss (MSE of z-scored action blocks)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = [m["step"] for m in metrics]
    ax.plot(steps, [m["train_loss"] for m in metrics], "o-", label="train (last batch)")
    ax.plot(steps, [m["val_mse"] for m in metrics], "s--", label="held-out episodes")
    ax.set(xlabel="step", ylabel="MSE, z-scored action block", title="actor")
    ax.legend()
    _save(fig, out_png, dpi=110)


def plot_robustness(result: dict, out_png) -> None:
    """Success in each perturbed scene beside the clean one, under each criterion, with the
    95 % intervals and the random policy's floor (the same in every scene)."""
    plt = _pyplot()
    rows = [("clean", result["clean"])] + [(p["spec"] + ("" if p["held_out"] else " (seen)"),
                                            p) for p in result["perturbations"]]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 3), 3.8), sharey=True)
    for ax, (title, pick) in zip(axes, [("authors' criterion", lambda r: r),
                                        ("strict criterion", lambda r: r["strict"])]):
        values = [pick(r)["success_rate"] for _, r in rows]
        err = [[max(0.0, v - pick(r)["success_ci95"][0]) for v, (_, r) in zip(values, rows)],
               [max(0.0, pick(r)["success_ci95"][1] - v) for v, (_, r) in zip(values, rows)]]
        colours = ["tab:green"] + ["tab:blue"] * (len(rows) - 1)
        ax.bar(range(len(rows)), values, yerr=err, color=colours, capsize=3)
        for x, v in enumerate(values):
            ax.text(x, v + 0.03, f"{100 * v:.0f}", ha="center", fontsize=7)
        ax.axhline(pick(result["clean"])["random_success_rate"], color="tab:gray", ls="--",
                   lw=1, label="random policy")
        ax.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=35, ha="right",
                      fontsize=7)
        ax.set(ylim=(0, 1.12), title=title)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel(f"{result['world']}, {result['planner']}: success "
                       f"({result['manifest']['episodes']} episodes)")
    fig.tight_layout()
    _save(fig, out_png, dpi=110)
