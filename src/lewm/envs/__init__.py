"""The worlds, registered with gymnasium under the `lewm/` namespace."""

from __future__ import annotations

import gymnasium as gym

from lewm.errors import LewmError

# world name -> gymnasium id
WORLDS = {"tworoom": "lewm/TwoRoom-v0"}

if "lewm/TwoRoom-v0" not in gym.registry:
    gym.register("lewm/TwoRoom-v0", entry_point="lewm.envs.tworoom:TwoRoomEnv")


def make_env(world: str, size: int = 64):
    """A world by its short name, rendering `size` x `size` images; returns the unwrapped env."""
    if world not in WORLDS:
        raise LewmError(f"unknown world {world!r} (choose from {sorted(WORLDS)})")
    if int(size) < 16:
        raise LewmError(f"image size {size} is too small (at least 16)")
    return gym.make(WORLDS[world], size=int(size), disable_env_checker=True).unwrapped
