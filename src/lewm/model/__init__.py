"""The LeWM model. Imports nothing from envs, data or training."""

from lewm.model.card import ModelCard
from lewm.model.config import ModelConfig
from lewm.model.lewm import LeWM, count_parameters

__all__ = ["LeWM", "ModelCard", "ModelConfig", "count_parameters"]
