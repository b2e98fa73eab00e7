"""What a trained model carries beside its weights: its card.

The world and image size it was trained for, the normalisation statistics of its inputs (one
`ZScore` per column, typed) and the configs that made it. `train()` sets it on the model it
trains and `lewm.load` on a checkpoint's, so a model fresh from training plans, probes and
measures surprise exactly as the same model loaded from disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lewm.model.normalize import ZScore


@dataclass(frozen=True)
class ModelCard:
    world: str
    """the world the training data came from (tworoom, pusht, reacher, cube)"""
    image_size: int
    """the size of the frames the model was trained on, in pixels"""
    stats: dict[str, ZScore]
    """normalisation statistics per column ("action", and "state"/"proprio" when recorded)"""
    train: dict
    """the training config as recorded (`lewm.trainconfig.from_dict` rebuilds the TrainConfig)"""
    data: dict
    """the dataset it was trained on: path, episodes, validation episodes, fingerprint, ..."""
    step: int | None = None
    """optimisation steps behind these weights"""
    meta: dict = field(default_factory=dict, repr=False, compare=False)
    """the checkpoint's config.json as written (empty for a model not yet saved)"""

    @property
    def action(self) -> ZScore:
        """The statistics that z-score single raw actions (A,)."""
        return self.stats["action"]

    @classmethod
    def from_checkpoint(cls, meta: dict, stats: dict[str, ZScore]) -> ModelCard:
        """A card from a checkpoint's config.json contents and its statistics. A KeyError,
        TypeError or ValueError means config.json is damaged."""
        data = meta["data"]
        return cls(
            world=str(data.get("world", meta["train"]["world"])),
            image_size=int(data["image_size"]), stats=stats, train=meta["train"], data=data,
            step=meta.get("step"), meta=meta,
        )
