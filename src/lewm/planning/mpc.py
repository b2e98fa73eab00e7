"""Model-predictive control in latent space: plan with CEM, execute, re-plan (docs/design.md
§1.4; arXiv 2603.19312 §3.2, Eqs. 4-5).

Every episode being evaluated is planned in the same CEM call: candidates of all episodes
go through the model's `rollout` together (no Python loop over episodes or candidates).
The model is any object with `encode`, `rollout`, `cfg` (frameskip, action_dim, history),
`stats` (z-score statistics of actions) and `device`, so an oracle model can stand in for
the learned one in tests.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from lewm.errors import LewmError
from lewm.model.normalize import ZScore
from lewm.planning.cem import CEMConfig, cem, episode_generators
from lewm.planning.graph import SubgoalPlanner


@dataclass
class EpisodeLog:
    success: bool = False
    success_step: int | None = None
    steps: int = 0
    frames: list = field(default_factory=list)
    imagined: list = field(default_factory=list)
    """with a decoder: beside each recorded frame, the decoded last prediction of the plan
    being executed (what the model expects the plan to reach)"""
    subgoals: list = field(default_factory=list)
    """with a graph planner: beside each recorded frame, the recorded frame the plan being
    executed aims at (the goal image once the route reaches it)"""


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


def compiled_rollout(model):
    """`model.rollout` through torch.compile, built once per model and kept on it. On CUDA it
    replays CUDA graphs (mode 'reduce-overhead'): a plan of one episode is hundreds of small
    kernels, which graphs launch at once. On a CPU the weights are frozen into the compiled
    code (inductor's `freezing`: linear layers prepacked for oneDNN, bf16 weights cast once
    rather than at every call), so it is rebuilt if the weights change. Each new batch shape
    (episodes finishing) compiles again, then runs with dynamic shapes, and on CUDA records
    one more graph. torch keeps one compile cache for `LeWM.rollout` in a process: past its
    recompile limit (8) with many models or context lengths, it falls back to eager (same
    answers, eager speed)."""
    cuda = torch.device(model.device).type == "cuda"
    # Frozen weights are constants of the compiled code: a fingerprint of every parameter's
    # storage and in-place version tells when they were trained or replaced since.
    weights = tuple((p.data_ptr(), p._version) for p in model.parameters())
    built = model.__dict__.get("_compiled_rollout")
    if built is None or built[0] != weights:
        if cuda and importlib.util.find_spec("triton") is None:
            raise LewmError("--compile on CUDA needs triton (pip install triton)")
        if not cuda and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            raise LewmError("--compile on a CPU needs a C++ compiler (e.g. apt-get install g++)")
        if cuda:
            fn = torch.compile(model.rollout, mode="reduce-overhead")
        else:
            # torch keeps compiled code per Python function, guarded by the model's identity
            # but not by its weights' values: code that froze other weights (these before
            # they changed, or a freed model's at the same address) would be reused.
            torch._dynamo.reset()
            fn = frozen(torch.compile(model.rollout))
        built = model.__dict__["_compiled_rollout"] = (weights, fn)
    return built[1]


def frozen(compiled):
    """`compiled` run with inductor's freezing on. Compilation happens lazily, at the first
    call and at each call with a new batch shape, so the setting must hold around every call
    (torch.compile's `options` did not reach the freezing pass in torch 2.13)."""
    from torch._inductor import config

    def run(*args):
        with config.patch(freezing=True):
            return compiled(*args)

    return run


@functools.cache  # once per process
def keep_freed_memory() -> None:
    """Have glibc keep freed blocks of up to 32 MB for reuse instead of returning them to the
    OS. A plan allocates activations of a few MB per layer and frees them at once; by default
    each is mmap-ed afresh and its pages faulted in again (zeroed by the kernel), which took
    a fifth of a compiled CPU plan's time (docs/planning.md). The process then holds on to
    its peak memory. A no-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1 << 30)


def latent_cost(model, context_emb, context_act, goal_emb, chunk: int | None = None,
                precision: str = "fp32", compiled: bool = False, reduce: str = "final",
                disagreement: float = 0.0):
    """Cost of candidates (b, S, H, blk): squared L2 between the last predicted embedding
    and the goal embedding (docs/design.md §1.4); with reduce="path", that distance averaged
    over all H predicted embeddings; with "ramp", averaged with weights 1, ..., H
    (`CEMConfig.cost`).

    An ensemble (lewm.planning.ensemble; its `dims` are its members' parts of the embedding)
    costs the sum of its members' distances; with `disagreement` > 0 plus that weight times
    the number of members times the std of the members' costs (`CEMConfig.disagreement`).

    precision: "bf16" runs the rollouts under autocast (matmuls in bfloat16, norms and the
    cost in fp32). compiled: the rollouts go through `compiled_rollout`.

    All b * S rollouts go through the model together; on a CPU they are cut into chunks of
    `chunk` rows (default 4096 there, none on accelerators), since one huge batch spills
    the caches and runs slower than several cache-sized ones.
    """
    on_cpu = torch.device(model.device).type == "cpu"
    if chunk is None:
        chunk = 4096 if on_cpu else 1 << 30
    if on_cpu:
        keep_freed_memory()
    rollout = compiled_rollout(model) if compiled else model.rollout
    parts = list(getattr(model, "dims", None) or [goal_emb.shape[-1]])  # an ensemble's members

    def cost(cand: torch.Tensor) -> torch.Tensor:
        b, S = cand.shape[:2]
        rep = lambda x: x.unsqueeze(1).expand(b, S, *x.shape[1:]).reshape(b * S, *x.shape[1:])
        ctx, goal = rep(context_emb), rep(goal_emb)
        ctx_act = rep(context_act) if context_act is not None else None
        flat = cand.flatten(0, 1)  # (b*S, H, blk)
        if reduce == "ramp":  # block k of H weighs k / (1 + ... + H)
            ramp = torch.arange(1, cand.shape[2] + 1, device=cand.device, dtype=torch.float32)
            ramp /= ramp.sum()
        out = []
        device_type = torch.device(model.device).type
        with torch.autocast(device_type, torch.bfloat16, enabled=precision == "bf16"):
            for i in range(0, b * S, chunk):
                part = slice(i, i + chunk)
                acts = ctx_act[part] if ctx_act is not None else None
                # Compiled on CUDA, `pred` may live in a CUDA graph's output buffer, which the
                # next call overwrites: it is reduced to costs before then.
                pred = rollout(ctx[part], acts, flat[part])  # (n, H, D)
                pred = pred[:, -1:] if reduce == "final" else pred
                sq = (pred.float() - goal[part, None]) ** 2  # (n, 1 or H, D)
                dist = torch.stack([d.sum(-1) for d in sq.split(parts, -1)], -1)  # (.., M)
                per_member = (torch.einsum("nhm,h->nm", dist, ramp) if reduce == "ramp"
                              else dist.mean(1))  # (n, M)
                total = per_member.sum(-1)
                if disagreement and len(parts) > 1:
                    total = total + disagreement * len(parts) * per_member.std(-1, correction=0)
                out.append(total)
        return torch.cat(out).view(b, S)

    return cost


def encode_frames(model, frames) -> torch.Tensor:
    """Embeddings (n, D) of single frames, a list of (H, W, 3) uint8 images."""
    return model.encode(torch.from_numpy(np.stack(frames))[:, None].to(model.device))[:, 0]


@torch.no_grad()
def run_mpc(model, envs, obs, goal_pixels, cem_cfg: CEMConfig, budget: int = 50,
            replan: int | None = None, seed: int = 0, record=(),
            episode_ids=None, decoder=None, graph=None) -> tuple[list[EpisodeLog], list]:
    """Drive `envs` (already reset; `obs` their first observations) towards `goal_pixels`
    (B, H, W, 3) uint8 for at most `budget` env steps each, stopping an episode at success.

    The plan is `horizon` action blocks; the first `replan` blocks (default: all) are executed
    `frameskip` raw steps at a time, then the episode is re-planned from its new frame with
    the last `cem_cfg.context` frames (at most the model's history) as context; with
    `cem_cfg.shrink` the re-plan covers only the blocks left of the plan (see CEMConfig). Returns
    per-episode logs and the wall-clock seconds of each CEM call with the number of episodes
    it planned, [(seconds, b), ...].

    episode_ids: each env's index in the whole evaluation (default 0..B-1), which seeds its
    CEM noise (with `seed`): an episode is planned the same way in any batch.
    `record`: the envs (positions in `envs`) whose frames are kept.
    decoder: embeddings (n, D) -> images (n, H, W, 3) uint8; with it, recorded episodes also
    keep the decoded final prediction of each plan (`EpisodeLog.imagined`).
    graph: a `LatentGraph` over recorded frames; with it each plan aims at the next subgoal
    on the route to the goal (lewm.planning.graph) instead of at the goal itself.
    """
    B, device = len(envs), model.device
    fs, hist = model.cfg.frameskip, min(cem_cfg.context, model.cfg.history)
    replan = replan or cem_cfg.horizon
    scaler = ActionScaler(model.trained.action, fs, envs[0].action_space)
    low, high = scaler.low_z.to(device), scaler.high_z.to(device)
    gens = episode_generators(seed, range(B) if episode_ids is None else episode_ids)

    goal_emb = encode_frames(model, list(goal_pixels))  # (B, D)
    subgoals = SubgoalPlanner(graph, goal_emb) if graph is not None else None
    logs = [EpisodeLog() for _ in range(B)]
    for i, env in enumerate(envs):
        logs[i].success = logs[i].success or env.success()
        logs[i].success_step = 0 if logs[i].success else None
        if i in record:
            logs[i].frames.append(obs[i])
    ctx_emb = [[] for _ in range(B)]  # per episode: embeddings of the frames at block starts
    ctx_act = [[] for _ in range(B)]  # per episode: the blocks executed between them
    timings = []
    expected: dict[int, np.ndarray] = {}  # recorded episode -> decoded plan end
    aim: dict[int, np.ndarray] = {}  # recorded episode -> image of its current subgoal
    plan, t, block_index = None, 0, 0  # block_index: the plan's next block to execute
    while t < budget:
        active = [i for i in range(B) if not logs[i].success]
        if not active:
            break
        z = encode_frames(model, [obs[i] for i in active])  # (b, D)
        for j, i in enumerate(active):
            ctx_emb[i] = (ctx_emb[i] + [z[j]])[-hist:]
            ctx_act[i] = ctx_act[i][-(len(ctx_emb[i]) - 1):] if len(ctx_emb[i]) > 1 else []
        if plan is None or block_index >= min(replan, plan.shape[1]):
            context = torch.stack([torch.stack(ctx_emb[i]) for i in active])  # (b, h, D)
            context_act = (torch.stack([torch.stack(ctx_act[i]) for i in active])
                           if context.shape[1] > 1 else None)  # (b, h - 1, blk)
            init, step_cfg, tail = None, cem_cfg, 0
            left = plan.shape[1] - block_index if plan is not None else 0
            if cem_cfg.shrink and left > 0:  # the same plan's end, from its unexecuted tail
                init, step_cfg = plan[active][:, block_index:], replace(cem_cfg, horizon=left)
                tail = left
            elif cem_cfg.warm_start and plan is not None:  # the unexecuted tail, then zeros
                init = plan.new_zeros(len(active), cem_cfg.horizon, plan.shape[2])
                init[:, :left] = plan[active][:, block_index:]
                tail = left
            start = time.perf_counter()
            target = goal_emb[active]
            if subgoals is not None:
                target, nodes = subgoals(active, z)
                for j, i in enumerate(active):
                    if i in record:
                        aim[i] = (goal_pixels[i] if nodes[j] < 0 or graph.frames is None
                                  else graph.frames[nodes[j]])
            cost = latent_cost(model, context, context_act, target, precision=cem_cfg.precision,
                               compiled=cem_cfg.compile, reduce=cem_cfg.cost,
                               disagreement=cem_cfg.disagreement)
            new_plan, _ = cem(cost, len(active), low.numel(), step_cfg,
                              [gens[i] for i in active], device, init, low, high, substeps=fs,
                              tail=tail)
            timings.append((time.perf_counter() - start, len(active)))
            plan = torch.zeros(B, *new_plan.shape[1:], device=device)
            plan[active] = new_plan
            block_index = 0
            shown = [j for j, i in enumerate(active) if i in record]
            if decoder is not None and shown:
                acts = context_act[shown] if context_act is not None else None
                final = model.rollout(context[shown], acts, new_plan[shown])[:, -1]  # (n, D)
                for j, img in zip(shown, decoder(final)):
                    expected[active[j]] = img
        for i in active:
            block = plan[i, block_index]
            ctx_act[i] = ctx_act[i] + [block]
            for a in scaler.to_env(block):
                if logs[i].success or logs[i].steps >= budget:
                    break
                obs[i], _, terminated, _, _ = envs[i].step(a)
                logs[i].steps += 1
                if i in record:
                    logs[i].frames.append(obs[i])
                    if i in expected:
                        logs[i].imagined.append(expected[i])
                    if i in aim:
                        logs[i].subgoals.append(aim[i])
                if terminated:
                    logs[i].success, logs[i].success_step = True, logs[i].steps
        block_index += 1
        t += fs
    return logs, timings


def run_random(envs, budget: int, seed: int) -> list[bool]:
    """Success of a uniform random policy on envs (already reset) within `budget` steps."""
    rng = np.random.default_rng(seed)
    out = []
    for env in envs:
        ok = env.success()
        for _ in range(budget):
            if ok:
                break
            _, _, ok, _, _ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
        out.append(bool(ok))
    return out
