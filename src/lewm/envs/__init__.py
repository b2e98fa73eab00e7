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

# world -> (gymnasium id, entry point)
_REGISTRY = {
    "tworoom": ("lewm/TwoRoom-v0", "lewm.envs.tworoom:TwoRoomEnv"),
    "pusht": ("lewm/PushT-v0", "lewm.envs.pusht:PushTEnv"),
    "reacher": ("lewm/Reacher-v0", "lewm.envs.reacher:ReacherEnv"),
    "cube": ("lewm/Cube-v0", "lewm.envs.cube:CubeEnv"),
}
WORLDS = {world: env_id for world, (env_id, _) in _REGISTRY.items()}

# world -> (optional extra, the packages it brings, whether it renders with MuJoCo)
EXTRAS = {
    "pusht": ("pusht", ("pymunk",), False),
    "reacher": ("dmc", ("mujoco", "dm_control"), True),
    "cube": ("cube", ("mujoco", "ogbench"), True),
}

for _env_id, _entry in _REGISTRY.values():
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry)


def require(world: str) -> None:
    """Check that the optional packages a world needs are installed (a one-line error naming
    the extra otherwise) and, for MuJoCo worlds, choose the headless GL backend."""
    if world not in EXTRAS:
        return
    extra, packages, mujoco = EXTRAS[world]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise LewmError(f"world {world!r} needs {', '.join(missing)}: "
                        f"pip install 'lewm[{extra}]'")
    if mujoco:
        from lewm.envs import gl

        gl.configure()


def make_env(world: str, size: int = 64):
    """A world by its short name, rendering `size` x `size` images; returns the unwrapped env."""
    if world not in WORLDS:
        raise LewmError(f"unknown world {world!r} (choose from {sorted(WORLDS)})")
    require(world)
    return gym.make(WORLDS[world], size=int(size), disable_env_checker=True).unwrapped
