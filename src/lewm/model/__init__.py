"""The LeWM model. Imports nothing from envs, data or training.

Names are imported when first used (PEP 562), so that reading a config
(`lewm.model.config`) does not load torch."""

from __future__ import annotations

import importlib

_WHERE = {"LeWM": "lewm.model.lewm", "count_parameters": "lewm.model.lewm",
          "ModelCard": "lewm.model.card", "ModelConfig": "lewm.model.config"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'lewm.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
