"""Training seeds as a unit: several evaluations of one recipe's models as one result.

Each model (a training seed, known by its checkpoint's SHA-256) is evaluated on the same
episode sets (manifests, by their SHA-256; one or several evaluation seeds). Under each
criterion the summary gives every model's rate over its episodes, the mean and standard
deviation of those rates over the models (the spread training seeds cause), and the rate
pooled over all episodes with its Wilson interval; the paired random policy beside each.
Models evaluated on different episodes are refused: their rates would not be comparable.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from lewm import __version__
from lewm.criteria import CRITERIA
from lewm.errors import LewmError
from lewm.io import read_json


def read_eval(path) -> dict:
    """An eval.json (or a run directory's), checked to carry both criteria."""
    path = Path(path)
    if path.is_dir():
        path = path / "eval.json"
    doc = read_json(path, "evaluation")
    if not isinstance(doc, dict) or not isinstance(doc.get("episodes"), list):
        raise LewmError(f"{path}: not an eval.json (no episodes)")
    if "strict" not in doc or not doc["episodes"] or "strict_success" not in doc["episodes"][0]:
        raise LewmError(f"{path}: evaluated before lewm judged the strict criterion; evaluate "
                        "it again (lewm eval RUN --manifest it --force)")
    if not isinstance(doc.get("manifest"), dict) or "sha256" not in doc["manifest"]:
        raise LewmError(f"{path}: its episodes have no manifest SHA-256; evaluate it again")
    doc["path"] = str(path)
    return doc


def _key(criterion: str) -> tuple[str, str]:
    """Per-episode fields of a criterion: (the planner's success, the random policy's)."""
    return (("success", "random_success") if criterion == "authors"
            else ("strict_success", "random_strict_success"))


def _rate(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarise_seeds(evals: list[dict]) -> dict:
    """The summary of `evals` (read_eval's): one model per checkpoint, each on the same
    manifests."""
    from lewm.evaluate import wilson

    if not evals:
        raise LewmError("no evaluations to summarise")
    worlds = {e.get("world") for e in evals}
    if len(worlds) > 1:
        raise LewmError(f"evaluations of several worlds ({', '.join(map(str, sorted(worlds)))}): "
                        "summarise one world at a time")
    planners = {e.get("planner") for e in evals}
    if len(planners) > 1:
        raise LewmError(f"evaluations by several planners ({', '.join(map(str, sorted(planners)))}"
                        "): seeds are a unit of one recipe acting one way; summarise one "
                        "planner at a time")
    scenes = {(e.get("perturb") or {}).get("spec", "clean") for e in evals}
    if len(scenes) > 1:
        raise LewmError(f"evaluations in several scenes ({', '.join(sorted(scenes))}): "
                        "summarise one perturbation at a time")
    models: dict[str, list[dict]] = defaultdict(list)
    for e in evals:
        models[e.get("checkpoint_sha256") or e["path"]].append(e)
    sets = {m: sorted(e["manifest"]["sha256"] for e in es) for m, es in models.items()}
    first_model, first = next(iter(sets.items()))
    for m, s in sets.items():
        if s != first:
            raise LewmError(f"{models[m][0]['path']}: evaluated on other episodes than "
                            f"{models[first_model][0]['path']} (manifests "
                            f"{', '.join(x[:12] for x in s)} vs "
                            f"{', '.join(x[:12] for x in first)}); replay one with --manifest")
        if len(set(s)) < len(s):
            raise LewmError(f"{models[m][0]['path']}: the same model on the same episodes twice")

    out = {"world": worlds.pop(), "planner": planners.pop(), "perturb": scenes.pop(),
           "version": __version__,
           "manifests": first, "models": [], "criteria": evals[0].get("criteria", {})}
    for es in models.values():
        eps = [ep for e in es for ep in e["episodes"]]
        row = {"checkpoint_sha256": es[0].get("checkpoint_sha256"),
               "evaluations": [e["path"] for e in es], "episodes": len(eps)}
        for c in CRITERIA:
            ok, rand = _key(c)
            row[c] = {"success_rate": _rate([ep[ok] for ep in eps]),
                      "random_success_rate": _rate([ep[rand] for ep in eps])}
        out["models"].append(row)
    everything = [ep for es in models.values() for e in es for ep in e["episodes"]]
    out["episodes"] = len(everything)
    for c in CRITERIA:
        ok, rand = _key(c)
        rates = np.array([row[c]["success_rate"] for row in out["models"]])
        k, kr, n = (sum(bool(ep[ok]) for ep in everything),
                    sum(bool(ep[rand]) for ep in everything), len(everything))
        out[c] = {
            "mean": float(rates.mean()),
            "std": float(rates.std(ddof=1)) if len(rates) > 1 else 0.0,
            "pooled_rate": k / n, "pooled_ci95": list(wilson(k, n)),
            "random_pooled_rate": kr / n, "random_ci95": list(wilson(kr, n)),
        }
    return out


def table(summary: dict) -> str:
    """The summary as a Markdown table: one row per model, then mean +- std and pooled."""
    def pct(x):
        return f"{100 * x:.1f} %"

    def ci(c):
        return f"{pct(c['pooled_rate'])} ({100 * c['pooled_ci95'][0]:.1f}-" \
               f"{100 * c['pooled_ci95'][1]:.1f})"

    m, k = len(summary["models"]), len(summary["manifests"])
    lines = [f"{summary['world']}, planner {summary.get('planner')}: {m} model"
             f"{'s' * (m > 1)} x {k} episode set"
             f"{'s' * (k > 1)}, {summary['episodes']} episodes",
             "",
             "| model | episodes | authors' | random | strict | random |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in summary["models"]:
        name = (row["checkpoint_sha256"] or row["evaluations"][0])[:12]
        lines.append(f"| {name} | {row['episodes']} | {pct(row['authors']['success_rate'])} | "
                     f"{pct(row['authors']['random_success_rate'])} | "
                     f"{pct(row['strict']['success_rate'])} | "
                     f"{pct(row['strict']['random_success_rate'])} |")
    a, s = summary["authors"], summary["strict"]
    lines.append(f"| mean +- std over models | | {pct(a['mean'])} +- {pct(a['std'])} | | "
                 f"{pct(s['mean'])} +- {pct(s['std'])} | |")
    lines.append(f"| pooled (95 % CI) | {summary['episodes']} | {ci(a)} | "
                 f"{pct(a['random_pooled_rate'])} | {ci(s)} | {pct(s['random_pooled_rate'])} |")
    return "\n".join(lines) + "\n"
