"""Model-predictive control in latent space: plan, execute, re-plan (docs/design.md §1.4;
arXiv 2603.19312 §3.2, Eqs. 4-5).

`run_mpc` drives a batch of episodes with any planner (lewm.planning.base.Planner): every
episode due for a re-plan is planned in one call. The model is any object with `encode`,
`rollout`, `cfg` (frameskip, action_dim, history), `trained` (its card: action statistics)
and `device`, so an oracle model can stand in for the learned one in tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from lewm.criteria import Outcome
from lewm.model.embed import embed_frames
from lewm.model.normalize import ZScore
from lewm.planning.base import Plan, PlanRequest, PlanSetup
from lewm.planning.config import MPCConfig
from lewm.planning.fast import rollout_of


@dataclass
class EpisodeLog(Outcome):
    steps: int = 0
    frames: list = field(default_factory=list)
    imagined: list = field(default_factory=list)
    """with a decoder: beside each recorded frame, the decoded last prediction of the plan
    being executed (what the model expects the plan to reach)"""
    subgoals: list = field(default_factory=list)
    """with a planner that aims at subgoals: beside each recorded frame, the image of the
    target of the plan being executed (the goal image when it aims at the goal)"""


class ActionScaler:
    """Maps z-scored action blocks (..., frameskip * A) to raw env actions and back."""

    def __init__(self, action: ZScore, frameskip: int, action_space):
        self.z = action.blocks(frameskip)
        low = np.tile(np.asarray(action_space.low, np.float32), frameskip)
        high = np.tile(np.asarray(action_space.high, np.float32), frameskip)
        self.low_z = torch.from_numpy(self.z.to_z(low))  # the action box, z-scored
        self.high_z = torch.from_numpy(self.z.to_z(high))
        self.low, self.high = torch.from_numpy(low), torch.from_numpy(high)
        self.frameskip = frameskip

    def to_env(self, block_z: torch.Tensor) -> np.ndarray:
        """(blk,) z-scored block -> (frameskip, A) raw actions clipped to the action box."""
        raw = torch.clamp(self.z.from_z(block_z.cpu().float()), self.low, self.high)
        return raw.view(self.frameskip, -1).numpy()


def plan_setup(model, action_space, seed: int = 0, data_path=None, run_dir=None) -> PlanSetup:
    """The PlanSetup of `model` acting in an env with `action_space`."""
    scaler = ActionScaler(model.trained_card.action, model.cfg.frameskip, action_space)
    return PlanSetup(scaler.low_z, scaler.high_z, seed, data_path,
                     None if run_dir is None else str(run_dir))


class Context:
    """One episode's context for the next plan: embeddings of the frames at the last
    `frames` block starts, the current one last, and the blocks executed between them."""

    def __init__(self, frames: int):
        self.frames, self.emb, self.actions = frames, [], []

    def see(self, z: torch.Tensor) -> None:
        self.emb = (self.emb + [z])[-self.frames :]
        self.actions = self.actions[-(len(self.emb) - 1) :] if len(self.emb) > 1 else []

    def act(self, block: torch.Tensor) -> None:
        self.actions = self.actions + [block]


def carry_over(mpc: MPCConfig, plan: torch.Tensor | None, done: int, rows):
    """What a re-plan of the episodes at `rows` of `plan` (B, H, blk), of which `done` blocks
    were executed, starts from: (its horizon, the blocks it takes over or None)."""
    left = plan.shape[1] - done if plan is not None else 0
    if mpc.carry == "shrink" and left > 0:  # the same plan's end: only the blocks left
        return left, plan[rows][:, done:]
    if mpc.carry == "warm" and left > 0:  # the unexecuted tail, then fresh blocks
        return mpc.horizon, plan[rows][:, done:]
    return mpc.horizon, None


class Recorder:
    """Keeps the frames of the episodes at positions `record` in their logs; with a decoder
    (embeddings (n, D) -> images (n, H, W, 3) uint8), also the decoded end of each plan,
    and the image of each plan's target."""

    def __init__(self, model, logs, record=(), goal_pixels=None, decoder=None):
        self.model, self.logs, self.record, self.decoder = model, logs, set(record), decoder
        self.goal_pixels, self.expected, self.aim = goal_pixels, {}, {}

    def planned(self, active, request: PlanRequest, plan: Plan) -> None:
        shown = [j for j, i in enumerate(active) if i in self.record]
        for j in shown:
            frame = plan.target_frames[j] if plan.target_frames else None
            if plan.target_frames is not None:
                self.aim[active[j]] = self.goal_pixels[active[j]] if frame is None else frame
        if self.decoder is not None and shown:
            acts = request.context_actions
            final = rollout_of(self.model)(request.context[shown], acts[shown] if acts is not
                                           None else None, plan.blocks[shown])[:, -1]  # (n, D)
            for j, img in zip(shown, self.decoder(final)):
                self.expected[active[j]] = img

    def frame(self, i: int, obs) -> None:
        if i in self.record:
            log = self.logs[i]
            log.frames.append(obs)
            if i in self.expected:
                log.imagined.append(self.expected[i])
            if i in self.aim:
                log.subgoals.append(self.aim[i])


@torch.no_grad()
def run_mpc(model, planner, envs, obs, goal_pixels, mpc: MPCConfig, budget: int = 50,
            episode_ids=None, recorder=None) -> tuple[list[EpisodeLog], list]:
    """Drive `envs` (already reset; `obs` their first observations) towards `goal_pixels`
    (B, H, W, 3) uint8 for at most `budget` env steps each, stopping an episode once both
    success criteria are decided (lewm.criteria).

    Each plan's first `mpc.period` blocks are executed, `frameskip` env steps at a time; then
    the episodes still going are re-planned together from their new frames, with the last
    `mpc.context` frames (at most the model's history) as context and what `carry_over`
    takes from the plan being executed. episode_ids: each env's index in the evaluation
    (default 0..B-1; it seeds the planner's noise). recorder: a `Recorder` over the same logs.
    Returns per-episode logs and, of each planner call, (its seconds, the episodes it
    planned, the seconds spent encoding their current frames just before it)."""
    B, fs = len(envs), model.cfg.frameskip
    ids = list(range(B)) if episode_ids is None else list(episode_ids)
    scaler = ActionScaler(model.trained_card.action, fs, envs[0].action_space)
    goal = embed_frames(model, list(goal_pixels))  # (B, D)
    logs = recorder.logs if recorder is not None else [EpisodeLog() for _ in range(B)]
    contexts = [Context(min(mpc.context, model.cfg.history)) for _ in range(B)]
    for i, env in enumerate(envs):
        logs[i].see(env, 0)
        recorder and recorder.frame(i, obs[i])
    timings, plan, done, t = [], None, 0, 0  # done: blocks of the current plan executed
    while t < budget and (active := [i for i in range(B) if not logs[i].decided]):
        seen = time.perf_counter()
        for i, z in zip(active, embed_frames(model, [obs[i] for i in active])):
            contexts[i].see(z)
        encode_s = time.perf_counter() - seen
        if plan is None or done >= min(mpc.period, plan.shape[1]):
            horizon, carried = carry_over(mpc, plan, done, active)
            ctx = torch.stack([torch.stack(contexts[i].emb) for i in active])  # (b, h, D)
            acts = (torch.stack([torch.stack(contexts[i].actions) for i in active])
                    if ctx.shape[1] > 1 else None)  # (b, h - 1, blk)
            request = PlanRequest([ids[i] for i in active], ctx, acts, goal[active], horizon,
                                  carried)
            start = time.perf_counter()
            new = planner.plan(request)
            timings.append((time.perf_counter() - start, len(active), encode_s))
            plan, done = torch.zeros(B, *new.blocks.shape[1:], device=model.device), 0
            plan[active] = new.blocks
            recorder and recorder.planned(active, request, new)
        for i in active:
            contexts[i].act(plan[i, done])
            for a in scaler.to_env(plan[i, done]):
                if logs[i].decided or logs[i].steps >= budget:
                    break
                obs[i] = envs[i].step(a)[0]
                logs[i].steps += 1
                recorder and recorder.frame(i, obs[i])
                logs[i].see(envs[i], logs[i].steps)
        done, t = done + 1, t + fs
    return logs, timings


def random_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The random policy's two action streams (see `run_random`)."""
    # Actions after an episode's authors' success (drawn only to decide the strict criterion)
    # come from a stream of their own, so that the random floor under the authors' criterion
    # is the one lewm has always reported: the same draws, episode after episode.
    return np.random.default_rng(seed), np.random.default_rng([seed, 1])


def run_random(envs, budget: int, seed) -> list[Outcome]:
    """Both criteria's outcomes of a uniform random policy on envs (already reset) within
    `budget` steps each. seed: an int, or `random_streams` to continue (the envs of several
    batches then draw as one list would)."""
    rng, after = random_streams(seed) if isinstance(seed, int) else seed
    out = []
    for env in envs:
        o = Outcome()
        o.see(env, 0)
        for step in range(1, budget + 1):
            if o.decided:
                break
            source = after if o.success else rng
            env.step(source.uniform(env.action_space.low, env.action_space.high))
            o.see(env, step)
        out.append(o)
    return out
