"""The LeWM model. Imports nothing from envs, data or training."""

from lewm.model.config import ModelConfig
from lewm.model.lewm import LeWM, count_parameters

__all__ = ["LeWM", "ModelConfig", "count_parameters"]
