"""The worlds, registered with gymnasium under the `lewm/` namespace.

Every world has the same interface (see `tworoom.TwoRoomEnv`): RGB uint8 observations of a
configurable size, actions in [-1, 1], `info` with `state`, `proprio`, `goal_state` and
`success`, `reset(options={"state", "goal_state"})`, `set_state`, `success()`,
`render_state(state)` and `goal_pixels()`; `terminated` means success.
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym

from lewm.errors import LewmError
from lewm.worlds import WORLDS as DECLARED

# world -> gymnasium id (each world's declaration is in lewm.worlds)
GYM_IDS = {name: w.gym_id for name, w in DECLARED.items()}

for _world in DECLARED.values():
    if _world.gym_id not in gym.registry:
        gym.register(_world.gym_id, entry_point=_world.env)


def require(world: str) -> None:
    """Check that the optional packages a world needs are installed (a one-line error naming
    the extra otherwise) and, for MuJoCo worlds, choose the headless GL backend."""
    if world not in DECLARED:
        return
    declared = DECLARED[world]
    missing = [p for p in declared.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise LewmError(f"world {world!r} needs {', '.join(missing)}: "
                        f"pip install 'lewm[{declared.extra}]'")
    if declared.mujoco:
        from lewm.envs import gl

        gl.configure()


def make_env(world: str, size: int = 64):
    """A world by its short name, rendering `size` x `size` images; returns the unwrapped env."""
    if world not in GYM_IDS:
        raise LewmError(f"unknown world {world!r} (choose from {sorted(GYM_IDS)})")
    require(world)
    return gym.make(GYM_IDS[world], size=int(size), disable_env_checker=True).unwrapped
