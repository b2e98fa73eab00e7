"""Goal sets: the (start state, goal state) pairs an evaluation drives episodes between,
and the step budget that goes with them (docs/design.md §1.4).

dataset: the paper's, start rows drawn with a seed from an episode file and the goal the
state `offset` steps later in the same episode; env: drawn by the environment; far: the
world's long-horizon set (Two-Room: the other room); or a JSON file of pairs.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lewm.data.hdf5 import check_world, open_episodes
from lewm.envs import make_env
from lewm.errors import LewmError
from lewm.worlds import WORLDS, get_world

PAPER_BUDGET = 50
"""env steps per episode in the paper's protocol"""


@dataclass(frozen=True)
class GoalSet:
    kind: str
    """dataset, env, far, or the goal file's path"""
    pairs: list
    """(start state, goal state) of each episode"""
    budget: int
    """env steps allowed per episode"""
    data: str | None = None
    """the episode file the pairs were drawn from (dataset goals)"""


def make_goals(kind: str, world: str, episodes: int, seed: int, offset: int = 25,
               data_path=None, budget: int = 0) -> GoalSet:
    """The goal set `kind` names for `world` (see the module docstring); `budget` > 0
    replaces the set's own."""
    if kind == "dataset":
        pairs, own = dataset_pairs(data_path, episodes, offset, seed, world), PAPER_BUDGET
    elif kind == "env":
        pairs, own = env_pairs(world, episodes, seed), PAPER_BUDGET
    elif kind == "far":
        pairs, own = far_pairs(world, episodes, seed), get_world(world).far_budget
    else:
        pairs, own = file_pairs(kind, world)
        own = own or PAPER_BUDGET
    return GoalSet(kind, pairs, budget or own, str(data_path) if kind == "dataset" else None)


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


def file_pairs(path, world: str) -> tuple[list[tuple], int]:
    """(start, goal) state pairs from a JSON file, and its budget (0: none given):
    {"pairs": [{"start": [...], "goal": [...]}, ...], "budget": 200} or a bare list of pairs.
    Each state is checked by the world's env; a bad file is a one-line error naming it."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LewmError(f"{path}: no such goal file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LewmError(f"{path}: not a JSON goal file ({e})") from None
    items = doc.get("pairs") if isinstance(doc, dict) else doc
    budget = doc.get("budget", 0) if isinstance(doc, dict) else 0
    if not isinstance(items, list) or not items:
        raise LewmError(f'{path}: expected {{"pairs": [{{"start": [...], "goal": [...]}}, ...]}} '
                        "with at least one pair")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise LewmError(f"{path}: budget must be a non-negative integer, got {budget!r}")
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
    return pairs, budget
