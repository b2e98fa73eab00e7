"""The perturbations' names, levels and specs (`NAME[:LEVEL]`), without the machinery that
draws them (lewm.perturb): the CLI and the configs read these without importing numpy."""

from __future__ import annotations

from dataclasses import dataclass

from lewm.errors import LewmError


@dataclass(frozen=True)
class Family:
    name: str
    default: float
    """the level `NAME` alone means"""
    floor: bool
    """paints the floor, so the world must say which pixels are floor"""
    doc: str


FAMILIES = {f.name: f for f in (
    Family("colour", 0.5, True, "the floor recoloured: a random colour mixed in at LEVEL"),
    Family("texture", 0.5, True, "a moving procedural background (drifting plane waves "
                                 "between two random colours) at contrast LEVEL"),
    Family("distractors", 0.5, True, "1 + 4 x LEVEL discs and squares drifting and bouncing "
                                     "on their own, behind the task's objects"),
    Family("hue", 0.5, False, "the colours of the agent and objects rotated in hue by "
                              "LEVEL x 90-180 degrees (the floor unchanged where known)"),
    Family("camera", 0.5, False, "the camera moved: shifted up to LEVEL x 8 % of the "
                                 "image, zoomed up to 1 + LEVEL x 0.15, rolled up to "
                                 "LEVEL x 10 degrees"),
    Family("noise", 0.5, False, "Gaussian pixel noise of std LEVEL x 40 (of 255), fresh "
                                "every frame"),
    Family("blur", 0.5, False, "Gaussian blur of std LEVEL x 1.5 px at 64 px (scaled "
                               "with the image)"),
)}


@dataclass(frozen=True)
class Perturbation:
    family: str
    level: float

    @property
    def spec(self) -> str:
        return f"{self.family}:{self.level:g}"

    @property
    def paints_floor(self) -> bool:
        return FAMILIES[self.family].floor

    def scene(self, seed, size: int):
        """One episode's scene (lewm.perturb.Scene) at image size `size`, drawn from `seed`
        (anything np.random.default_rng takes: the evaluation uses [eval seed, episode
        index])."""
        import numpy as np

        from lewm.perturb import SCENES

        return SCENES[self.family](np.random.default_rng(seed), self.level, int(size))


def parse(spec: str) -> Perturbation:
    """`NAME` or `NAME:LEVEL` -> a Perturbation; a one-line error for anything else."""
    name, _, level = str(spec).partition(":")
    if name not in FAMILIES:
        raise LewmError(f"unknown perturbation {name!r} (choose from {', '.join(FAMILIES)})")
    if not level:
        return Perturbation(name, FAMILIES[name].default)
    try:
        value = float(level)
    except ValueError:
        raise LewmError(f"perturbation {spec!r}: level {level!r} is not a number") from None
    if not 0 < value <= 1:
        raise LewmError(f"perturbation {spec!r}: level must be in (0, 1], got {level}")
    return Perturbation(name, value)
