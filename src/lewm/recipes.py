"""Named recipes: what to collect, how to train and how to plan, one typed value each.

`lewm collect --preset NAME`, `lewm train --preset NAME` and `lewm eval` (through the
`plan` a run records in its config.json) all read the same `Recipe`. Each keeps a one-line
reason and a link to its entry in the experiment log (docs/log.md), where the measurements
behind its choices are; the current figures are in docs/results.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lewm.actor.config import ActorConfig
from lewm.data.config import CollectConfig
from lewm.errors import LewmError
from lewm.model.config import ModelConfig
from lewm.planning.config import CEMConfig, CostConfig, MPCConfig, PlanConfig
from lewm.trainconfig import TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    """the --preset name"""
    why: str
    """what it is for, in one line"""
    log: str
    """where its choices were measured"""
    collect: CollectConfig
    """the data it is meant for (`lewm collect --preset NAME`)"""
    train: TrainConfig
    """the training run (`lewm train --preset NAME`)"""
    plan: PlanConfig = PlanConfig()
    """how its runs act (`lewm eval` starts from it; its flags apply on top)"""
    actor: ActorConfig = ActorConfig()
    """the actor its runs train (`lewm train-actor RUN` starts from it)"""
    acting: tuple[PlanConfig, ...] = ()
    """how its runs act with other planners: `lewm eval --planner NAME` starts from the one
    whose `planner` is NAME (lewm.planning.config.planner_defaults when none is)"""

    def __post_init__(self):
        names = [p.planner for p in self.acting]
        if self.plan.planner in names or len(set(names)) < len(names):
            raise LewmError(f"recipe {self.name}: one plan per planner")


MESSY_TRAINING = "none,colour,distractors,hue,noise"
"""the perturbation families the messy recipes train with (TrainConfig.augment); texture,
camera and blur stay held out"""

# A conv encoder at 64 px: trains in minutes on two CPU cores. Its predictor's position
# embeddings start small (the CPU recipes were tuned so), not at the authors' N(0, 1).
_CPU_MODEL = ModelConfig(
    encoder="conv", image_size=64, conv_channels=(16, 32, 64, 64), enc_dim=64, embed_dim=64,
    proj_hidden=256, act_hidden=128, pred_depth=3, pred_heads=4, pred_head_dim=16, pred_mlp=256,
    dropout=0.0, pred_pos_init="small",
)
_CPU_TRAIN = dict(batch_size=64, lr=1e-3, num_proj=256, threads=2)
_PAPER_LOG = "README.md#what-is-verified-where"


def _paper(world: str, episodes: int, steps: int, **train) -> dict:
    """The paper model (docs/design.md §1.2-§1.3) on a world's authors'-size dataset."""
    return dict(collect=CollectConfig(world, episodes=episodes, steps=steps, size=224),
                train=TrainConfig(world=world, epochs=10, **train), log=_PAPER_LOG)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        "tworoom-cpu",
        why="Two-Room in minutes on a CPU; a weak SIGReg keeps latent distance growing across "
            "the room, and one frame of history is the whole state",
        log="docs/log.md#tworoom-cpu",
        collect=CollectConfig("tworoom", episodes=300, steps=100, size=64),
        # Clips of two frames cut four at a time from windows of five: each frame encoded
        # once, the same plans and probe as independent clips (docs/log.md#training-speed).
        train=TrainConfig(model=dataclasses.replace(_CPU_MODEL, history=1), steps=3000,
                          weight_decay=1e-3, warmup_steps=100, lambd=0.005, val_every=500,
                          ckpt_every=500, clips_per_window=4, **_CPU_TRAIN),
        plan=PlanConfig(solver=CEMConfig(iterations=10)),
    ),
    Recipe(
        "pusht-cpu",
        why="Push-T on a CPU: keypoints read the block's angle; CEM clipped to the action box, "
            "iCEM's pink noise, re-planned every block with a shrinking horizon",
        log="docs/log.md#pusht-cpu",
        collect=CollectConfig("pusht", episodes=1000, steps=200, size=64),
        train=TrainConfig(model=dataclasses.replace(_CPU_MODEL, conv_channels=(16, 32, 64),
                                                    conv_keypoints=64),
                          world="pusht", steps=48_000, warmup_steps=200, lambd=0.2,
                          val_every=1000, ckpt_every=1000, **_CPU_TRAIN),
        plan=PlanConfig(solver=CEMConfig(clip=True, noise_beta=1.0, keep_elites=0.3,
                                         iterations=10),
                        mpc=MPCConfig(replan=1, carry="shrink", carry_std=0.25)),
        # Hindsight goals no farther than the protocol's (25 steps), and the predictor's
        # check of the actor's block: both measured better here than the defaults
        # (docs/log.md#the-learned-actor).
        actor=ActorConfig(max_offset=25, consistency=1.0),
    ),
    Recipe(
        "reacher-cpu",
        why="Reacher on a CPU (software GL: a small dataset); the planner limits it, so it "
            "plans on the path cost with 3 context frames, re-planning every block",
        log="docs/log.md#reacher-cpu",
        collect=CollectConfig("reacher", episodes=100, steps=200, size=64),
        train=TrainConfig(model=_CPU_MODEL, world="reacher", steps=6000, warmup_steps=200,
                          lambd=0.1, val_every=500, ckpt_every=500, **_CPU_TRAIN),
        plan=PlanConfig(cost=CostConfig(cost="path"), mpc=MPCConfig(context=3, replan=1)),
        # Random data: a goal one block ahead is what its actions explain (inverse dynamics);
        # farther hindsight goals teach it nothing the data's random walk holds. Its 90
        # training episodes overfit within a few hundred steps, so a short schedule suffices.
        actor=ActorConfig(max_offset=5, steps=1000),
    ),
    Recipe(
        "cube-cpu",
        why="Cube on a CPU from oracle episodes; CEM clipped to the action box (the model is "
            "exploited outside it), longer and coloured for its 25-D blocks, path cost",
        log="docs/log.md#cube-cpu",
        collect=CollectConfig("cube", episodes=200, steps=200, size=64),
        train=TrainConfig(model=dataclasses.replace(_CPU_MODEL, action_dim=5), world="cube",
                          steps=6000, warmup_steps=200, lambd=0.1, val_every=500,
                          ckpt_every=500, **_CPU_TRAIN),
        plan=PlanConfig(solver=CEMConfig(clip=True, iterations=60, noise_beta=2.0,
                                         keep_elites=0.3),
                        cost=CostConfig(cost="path"), mpc=MPCConfig(context=3)),
    ),
    Recipe("paper", why="the paper's configuration: ViT-Tiny/14 at 224 px, 10 epochs",
           **_paper("tworoom", 10_000, 100)),
    Recipe("tworoom-paper", why="the paper model on Two-Room", **_paper("tworoom", 10_000, 100)),
    Recipe("pusht-paper", why="the paper model on Push-T",
           **_paper("pusht", 20_000, 200, val_every=5000, ckpt_every=5000)),
    Recipe("reacher-paper", why="the paper model on Reacher",
           **_paper("reacher", 10_000, 200, val_every=5000, ckpt_every=5000)),
    Recipe("cube-paper", why="the paper model on Cube (5-D actions)",
           **_paper("cube", 10_000, 200, model=ModelConfig(action_dim=5), val_every=5000,
                    ckpt_every=5000)),
    Recipe(
        "tiny", why="seconds on a CPU: for tests and for trying the commands",
        log="tests/golden/tiny.json",
        collect=CollectConfig("tworoom", episodes=12, steps=40, size=32),
        train=TrainConfig(
            model=dataclasses.replace(
                _CPU_MODEL, image_size=32, conv_channels=(8, 16, 16), enc_dim=32, embed_dim=32,
                proj_hidden=64, act_hidden=32, pred_depth=1, pred_heads=2, pred_mlp=64,
            ),
            batch_size=16, steps=20, lr=1e-3, warmup_steps=2, lambd=0.05, num_proj=64,
            val_every=10, val_clips=64, log_every=5, ckpt_every=10,
        ),
    ),
)}


def _messy(clean: Recipe) -> Recipe:
    """A clean CPU recipe made to hold up in messy scenes (issue 49): the same data, model,
    schedule and planning, with each training clip also seen through a scene drawn from
    MESSY_TRAINING and an invariance term pulling its embeddings to the clean clip's.
    (Training on messy data alone, `lewm collect --distractors`, taught the latent the scene
    instead of the task: docs/robustness.md.)"""
    world = clean.collect.world
    return dataclasses.replace(
        clean, name=f"{world}-messy-cpu",
        why=f"{clean.name} that holds up in messy scenes: each clip also seen through a "
            "recoloured floor, drifting shapes, other hues or pixel noise, its embeddings "
            "pulled to the clean clip's; moving textures, camera moves and blur stay held out",
        log="docs/robustness.md",
        # Independent clips, as its robustness was measured; windows of clips are not yet
        # measured beside the invariance term.
        train=dataclasses.replace(clean.train, augment=MESSY_TRAINING, invariance=1.0,
                                  clips_per_window=1))


RECIPES.update({r.name: r for r in (_messy(RECIPES["tworoom-cpu"]),
                                    _messy(RECIPES["pusht-cpu"]))})


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise LewmError(f"unknown preset {name!r} (choose from {', '.join(sorted(RECIPES))})")
    return RECIPES[name]
