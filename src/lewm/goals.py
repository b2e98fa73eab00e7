"""Goal sets: the (start state, goal state) pairs an evaluation drives episodes between,
and the step budget that goes with them (docs/design.md §1.4).

dataset: the paper's, start rows drawn with a seed from an episode file and the goal the
state `offset` steps later in the same episode; env: drawn by the environment; far: the
world's long-horizon set (Two-Room: the other room); or a JSON file of pairs. Any of them
may start at rest: each start state with its velocities zeroed (`start="rest"`), since a
start restored mid-trajectory carries a velocity that one frame does not show.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass

import numpy as np

from lewm.data.hdf5 import check_world, open_episodes
from lewm.envs import make_env
from lewm.errors import LewmError
from lewm.io import read_json
from lewm.worlds import WORLDS, get_world

PAPER_BUDGET = 50
"""env steps per episode in the paper's protocol"""


@dataclass(frozen=True)
class GoalSet:
    kind: str
    """dataset, env, far, the goal file's path, or the manifest replayed"""
    pairs: list
    """(start state, goal state) of each episode"""
    budget: int
    """env steps allowed per episode"""
    data: str | None = None
    """the episode file the pairs were drawn from (dataset goals)"""
    start: str = "recorded"
    """recorded: the start states as drawn; rest: with their velocities zeroed"""

    @property
    def sha256(self) -> str:
        """The manifest's identity: SHA-256 of the pair list, as eval.json records it."""
        return manifest_sha256(self.pairs)


def manifest_sha256(pairs) -> str:
    """SHA-256 of (start, goal) pairs written as JSON lists of floats: the same pairs give
    the same hash whether drawn afresh or read back from an eval.json."""
    doc = [[np.asarray(s, np.float64).tolist(), np.asarray(g, np.float64).tolist()]
           for s, g in pairs]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


START_KINDS = ("recorded", "rest")


def make_goals(kind: str, world: str, episodes: int, seed: int, offset: int = 25,
               data_path=None, budget: int = 0, manifest: str = "",
               start: str = "recorded") -> GoalSet:
    """The goal set `kind` names for `world` (see the module docstring), or with `manifest`
    the pairs of a previous evaluation replayed exactly; `budget` > 0 replaces the set's
    own; `start="rest"` zeroes the start states' velocities."""
    if start not in START_KINDS:
        raise LewmError(f"--start must be one of {', '.join(START_KINDS)}, got {start!r}")
    if manifest:
        pairs, own = manifest_pairs(manifest, world)
        return GoalSet(f"manifest {manifest}", at_rest(pairs, world, start), budget or own,
                       start=start)
    if kind == "dataset":
        pairs, own = dataset_pairs(data_path, episodes, offset, seed, world), PAPER_BUDGET
    elif kind == "env":
        pairs, own = env_pairs(world, episodes, seed), PAPER_BUDGET
    elif kind == "far":
        pairs, own = far_pairs(world, episodes, seed), get_world(world).far_budget
    else:
        pairs, own = file_pairs(kind, world)
        own = own or PAPER_BUDGET
    return GoalSet(kind, at_rest(pairs, world, start), budget or own,
                   str(data_path) if kind == "dataset" else None, start)


def at_rest(pairs, world: str, start: str) -> list[tuple]:
    """`pairs` with each start put at rest by its world's env (`at_rest`) when `start` is
    "rest"; the goals are images, which velocities do not change."""
    if start != "rest":
        return pairs
    module, name = get_world(world).env.split(":")
    env_class = getattr(importlib.import_module(module), name)
    return [(env_class.at_rest(s), g) for s, g in pairs]


def read_states(f, path, world: str) -> np.ndarray:
    """(N, S) environment states of every row of an open episode file."""
    if "state" in f:
        return f["state"][()]
    # Where the authors' files keep what lewm's env takes as its state (lewm.worlds).
    columns = get_world(world).authors_state if world in WORLDS else ()
    if columns and all(c in f for c in columns):
        return np.concatenate([f[c][()].reshape(len(f[c]), -1) for c in columns], axis=1)
    where = f"'state' or {' + '.join(map(repr, columns))}" if columns else "'state'"
    raise LewmError(f"{path}: has no {where} column to draw start and goal states from "
                    "(use --goals env)")


def dataset_rows(f, path, n: int, offset: int, seed: int) -> np.ndarray:
    """`n` rows of an open episode file drawn without replacement (seed) among the rows whose
    episode continues for `offset` more steps: the protocol's start rows."""
    ep_len, ep_offset = f["ep_len"][()], f["ep_offset"][()]
    rows = np.concatenate([o + np.arange(max(0, n_ - offset)) for o, n_ in zip(ep_offset, ep_len)])
    if len(rows) == 0:
        raise LewmError(f"{path}: every episode is shorter than offset + 1 = {offset + 1} steps")
    return np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False)


def dataset_pairs(path, n: int, offset: int, seed: int, world: str = "") -> list[tuple]:
    """(start state, goal state) of the protocol's `n` start rows (`dataset_rows`); the goal
    is the state `offset` steps later in the same episode."""
    with open_episodes(path) as f:
        if world:
            check_world(path, f.attrs, world)
        state = read_states(f, path, world)
        pick = dataset_rows(f, path, n, offset, seed)
    return [(state[r], state[r + offset]) for r in pick]


def env_pairs(world: str, n: int, seed: int) -> list[tuple]:
    env = make_env(world, 16)
    pairs = []
    for i in range(n):
        _, info = env.reset(seed=seed * 100_003 + i)
        pairs.append((info["state"], info["goal_state"]))
    env.close()
    return pairs


def far_pairs(world: str, n: int, seed: int) -> list[tuple]:
    """The world's far goal set (its env module's `far_pairs`), else its env's own draws."""
    module = importlib.import_module(get_world(world).module)
    if hasattr(module, "far_pairs"):
        return module.far_pairs(np.random.default_rng(seed), n)
    return env_pairs(world, n, seed)


def manifest_pairs(path, world: str) -> tuple[list[tuple], int]:
    """The pairs (and budget) of a previous evaluation's eval.json, or of a goal-pairs file
    (`file_pairs`), each state checked by the world's env; an evaluation of another world, or
    a file that is neither, is a one-line error naming it."""
    doc = read_json(path, "manifest")
    if not (isinstance(doc, dict) and "episodes" in doc):
        return _file_pairs(doc, path, world)
    if doc.get("world") != world:
        raise LewmError(f"{path}: an evaluation in world {doc.get('world')!r}, but this run is "
                        f"a {world} model")
    episodes = doc["episodes"]
    if not isinstance(episodes, list) or not episodes:
        raise LewmError(f"{path}: its episodes are not a non-empty list")
    items = [{"start": e.get("start_state"), "goal": e.get("goal_state")}
             if isinstance(e, dict) else e for e in episodes]
    pairs = _checked_pairs(path, items, world)
    recorded = doc.get("manifest", {}).get("sha256") if isinstance(doc.get("manifest"),
                                                                   dict) else None
    if recorded is not None and recorded != manifest_sha256(pairs):
        raise LewmError(f"{path}: its episodes do not match its manifest's SHA-256 (edited?)")
    budget = doc.get("budget", 0)
    return pairs, budget if isinstance(budget, int) and budget > 0 else 0


def _checked_pairs(path, items, world: str) -> list[tuple]:
    """(start, goal) of each {"start": ..., "goal": ...} item, checked by the world's env."""
    env = make_env(world, 16)
    pairs = []
    try:
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not {"start", "goal"} <= set(item):
                raise LewmError(f'{path}: pair {i} must be an object with "start" and "goal"')
            try:
                pairs.append((env.check_state(item["start"], "start"),
                              env.check_state(item["goal"], "goal")))
            except (LewmError, TypeError, ValueError) as e:
                raise LewmError(f"{path}: pair {i}: {e}") from None
    finally:
        env.close()
    return pairs


def file_pairs(path, world: str) -> tuple[list[tuple], int]:
    """(start, goal) state pairs from a JSON file, and its budget (0: none given):
    {"pairs": [{"start": [...], "goal": [...]}, ...], "budget": 200} or a bare list of pairs.
    Each state is checked by the world's env; a bad file is a one-line error naming it."""
    return _file_pairs(read_json(path, "goal file"), path, world)


def _file_pairs(doc, path, world: str) -> tuple[list[tuple], int]:
    items = doc.get("pairs") if isinstance(doc, dict) else doc
    budget = doc.get("budget", 0) if isinstance(doc, dict) else 0
    if not isinstance(items, list) or not items:
        raise LewmError(f'{path}: expected {{"pairs": [{{"start": [...], "goal": [...]}}, ...]}} '
                        "with at least one pair")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise LewmError(f"{path}: budget must be a non-negative integer, got {budget!r}")
    return _checked_pairs(path, items, world), budget
