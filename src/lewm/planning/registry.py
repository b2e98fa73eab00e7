"""Planners by name. A planner is a class built as `Planner(cfg, model, setup)` (see
`lewm.planning.base`); adding one is its module and one `register` line. Entries are
"module:Class" strings, imported when used, so naming them costs nothing."""

from __future__ import annotations

import importlib

PLANNERS: dict[str, str] = {
    "cem": "lewm.planning.cem:CEMPlanner",
    "graph": "lewm.planning.graph:GraphPlanner",
    "actor": "lewm.planning.actor:ActorPlanner",
    "guarded": "lewm.planning.actor:GuardedPlanner",
}


def register(name: str, target: str) -> None:
    """Make `--planner NAME` build the class at `target` ("module:Class")."""
    PLANNERS[name] = target


def make_planner(cfg, model, setup):
    """The planner `cfg.planner` names, built for `model` (see `lewm.planning.base`)."""
    module, _, attr = PLANNERS[cfg.planner].partition(":")
    return getattr(importlib.import_module(module), attr)(cfg, model, setup)
