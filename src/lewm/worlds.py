"""Each world in one declaration: everything the verbs look up by a world's short name.

The physics, rendering and surprise events live in the world's env module
(`lewm.envs.NAME`); what the rest of lewm needs to know about it is declared here, in one
`World` record, so that adding a world is its env module plus one entry below (and its
recipes: docs/adding-a-world.md). This module imports nothing heavy: the CLI, recipes and
checkpoints read it without loading physics engines or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Quantity:
    """A physical quantity the probes read off a low-dimensional column."""

    columns: tuple[int, ...]
    """the column's dimensions that hold it"""
    source: str = "state"
    """the HDF5 column (state or proprio)"""
    angle: bool = False
    """an angle (one column), probed as (sin, cos) so the target is continuous where it wraps"""


@dataclass(frozen=True)
class World:
    name: str
    """short name: the --world / preset prefix"""
    gym_id: str
    """gymnasium id it is registered under"""
    env: str
    """entry point, "module:Class"; the module also defines teleport(env, rng) and
    recolour(env, rng) for the surprise study"""
    policies: dict[str, str | None]
    """collection policies: name -> "module:Class" (None: uniform random actions)"""
    default_policy: str
    """the policy its datasets are collected with by default (the authors' choice)"""
    quantities: dict[str, Quantity]
    """what `lewm probe` reads from the latent space"""
    far_budget: int
    """env steps allowed for `lewm eval --goals far`"""
    eval_batch: int = 100
    """episodes `lewm eval` runs at once when `--batch` is not given: their environments
    are alive together, and a MuJoCo env holds a renderer and its scene"""
    extra: str | None = None
    """the optional lewm extra that brings its packages"""
    packages: tuple[str, ...] = ()
    """the packages of that extra, checked before the env is made"""
    mujoco: bool = False
    """renders with MuJoCo (then a headless GL backend is chosen first)"""
    authors_state: tuple[str, ...] = field(default_factory=tuple)
    """columns of the authors' datasets that hold its env state, in order, when their files
    have no `state` column"""

    @property
    def module(self) -> str:
        return self.env.split(":")[0]


WORLDS: dict[str, World] = {w.name: w for w in (
    World(
        "tworoom", "lewm/TwoRoom-v0", "lewm.envs.tworoom:TwoRoomEnv",
        policies={"random": None, "noisy-expert": "lewm.envs.policies:TwoRoomNoisyExpert"},
        default_policy="noisy-expert",
        quantities={"agent_position": Quantity((0, 1))},
        far_budget=200,  # the detour through the door is up to ~300 units (60 full steps)
        authors_state=("proprio",),  # the agent position
    ),
    World(
        "pusht", "lewm/PushT-v0", "lewm.envs.pusht:PushTEnv",
        policies={"random": None, "near-block": "lewm.envs.pusht_expert:NearBlockPolicy",
                  "expert": "lewm.envs.pusht_expert:PushTExpert"},
        default_policy="expert",
        quantities={"agent_position": Quantity((0, 1)), "block_position": Quantity((2, 3)),
                    "block_angle": Quantity((4,), angle=True)},
        far_budget=300,  # the full task: a random start to the fixed target pose
        extra="pusht", packages=("pymunk",),  # the authors' `state` is lewm's layout
    ),
    World(
        "reacher", "lewm/Reacher-v0", "lewm.envs.reacher:ReacherEnv",
        policies={"random": None}, default_policy="random",
        quantities={"shoulder_angle": Quantity((0,), angle=True),
                    "wrist_angle": Quantity((1,), angle=True)},
        far_budget=200,
        extra="dmc", packages=("mujoco", "dm_control"), mujoco=True,
        authors_state=("qpos", "qvel"),
    ),
    World(
        "cube", "lewm/Cube-v0", "lewm.envs.cube:CubeEnv",
        policies={"random": None, "oracle": "lewm.envs.cube_oracle:CubeOracle"},
        default_policy="oracle",
        # lewm.envs.cube's layout: the cube centre is state[14:17]; the end effector (not
        # in qpos) is proprio[0:3].
        quantities={"cube_position": Quantity((14, 15, 16)),
                    "effector_position": Quantity((0, 1, 2), "proprio")},
        far_budget=300,
        eval_batch=25,  # ~0.33 GB per env: 100 at once overran 24 GB
        extra="cube", packages=("mujoco", "ogbench"), mujoco=True,
        authors_state=("qpos", "qvel"),
    ),
)}


def get_world(name: str) -> World:
    if name not in WORLDS:
        from lewm.errors import LewmError

        raise LewmError(f"unknown world {name!r} (choose from {', '.join(WORLDS)})")
    return WORLDS[name]
