"""Collect episodes with a scripted policy into an HDF5 episode file.

Several environments step side by side, optionally in several worker processes; episode i
is seeded from (seed, i) alone, so the file is the same whatever the number of environments
or workers.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lewm.data.config import CollectConfig, distractor_specs
from lewm.data.hdf5 import EpisodeWriter
from lewm.envs import GYM_IDS, make_env
from lewm.envs.policies import check_policy, make_policy
from lewm.errors import LewmError
from lewm.io import check_output
from lewm.signals import StopFlag


def episode_seeds(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """(env reset seed, policy RNG) of episode `index`, a function of (seed, index) alone."""
    env_seed = int(np.random.SeedSequence(seed, spawn_key=(index, 0)).generate_state(1)[0])
    return env_seed, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))


def shown_through(env, cfg: CollectConfig, index: int):
    """`env` as episode `index` of a `--distractors` collection renders it: through one of
    the listed perturbations, drawn with its scene from a stream of its own (so the
    policy's and the env's draws are those of the clean collection)."""
    specs = distractor_specs(cfg.distractors)
    if not specs:
        return env
    from lewm.perturb import PerturbedEnv, parse

    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(index, 2)))
    spec = specs[int(rng.integers(len(specs)))]
    if spec == "none":
        return env
    return PerturbedEnv(env, parse(spec), rng.integers(2**63, size=2))


def rollout_group(envs, policies, indices, cfg: CollectConfig, on_step=None):
    """Run episodes `indices` side by side, one per env; returns their columns in order and
    whether each episode reached its goal (the env reported success) at any step."""
    obs, infos = [], []
    envs = [shown_through(env, cfg, i) for env, i in zip(envs, indices)]
    for env, policy, i in zip(envs, policies, indices):
        env_seed, rng = episode_seeds(cfg.seed, i)
        o, info = env.reset(seed=env_seed)
        policy.reset(info, rng)
        obs.append(o)
        infos.append(info)
    n = len(indices)
    T = cfg.steps + 1
    solved = [bool(info["success"]) for info in infos]
    cols = {
        "pixels": np.empty((n, T, *obs[0].shape), np.uint8),
        "action": np.full((n, T, envs[0].action_space.shape[0]), np.nan, np.float32),
        "state": np.empty((n, T, *infos[0]["state"].shape), np.float32),
        "proprio": np.empty((n, T, *infos[0]["proprio"].shape), np.float32),
    }
    for t in range(T):
        for k, env in enumerate(envs[:n]):
            cols["pixels"][k, t] = obs[k]
            cols["state"][k, t] = infos[k]["state"]
            cols["proprio"][k, t] = infos[k]["proprio"]
            if t == cfg.steps:
                continue
            action = policies[k](obs[k], infos[k])
            cols["action"][k, t] = action
            obs[k], _, terminated, _, infos[k] = env.step(action)
            solved[k] |= terminated
        if on_step is not None and t < cfg.steps:
            on_step(n)
    return [{name: col[k] for name, col in cols.items()} for k in range(n)], solved


def collect(cfg: CollectConfig, out, force: bool = False, progress: bool = True) -> dict:
    """Collect `cfg.episodes` episodes into `out`; returns a summary (rows, seconds, rate)."""
    from lewm.locks import exclusive

    check_output(out, force)
    with exclusive(out):
        check_output(out, force)  # again under the lock: another writer may have finished
        return _collect_envs(cfg, out, force, progress)


def check_resources(cfg: CollectConfig, out) -> None:
    """Refuse up front what cannot fit: the frames of one group of parallel episodes in
    memory, and (uncompressed) the whole file on disk."""
    frame = cfg.size * cfg.size * 3
    group = min(cfg.num_envs, cfg.episodes) * (cfg.steps + 1) * frame
    available = _available_memory()
    if group > 0.8 * available:
        raise LewmError(f"--steps {cfg.steps} at --size {cfg.size} needs ~{_size(group)} of "
                        f"memory for {min(cfg.num_envs, cfg.episodes)} episodes in flight, "
                        f"{_size(available)} available (lower --steps, --size or --num-envs)")
    if cfg.compression == "none":
        total = cfg.episodes * (cfg.steps + 1) * frame
        free = shutil.disk_usage(Path(out).resolve().parent).free
        if total > free:
            raise LewmError(f"{out}: needs ~{_size(total)}, {_size(free)} free on its disk "
                            "(collect fewer episodes, or --compression blosc)")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _collect_envs(cfg: CollectConfig, out, force: bool, progress: bool) -> dict:
    check_resources(cfg, out)
    # Checked before the progress bar starts (and before any worker spawns), so a bad
    # name is the only line the user sees.
    cfg = replace(cfg, policy=check_policy(cfg.world, cfg.policy, cfg.noise_std))
    attrs = {
        "env": GYM_IDS[cfg.world],
        **{k: ("" if v is None else v) for k, v in asdict(cfg).items()},
        "image_size": cfg.size,
    }
    groups = [list(range(first, min(first + cfg.num_envs, cfg.episodes)))
              for first in range(0, cfg.episodes, cfg.num_envs)]
    start = time.perf_counter()
    bar = tqdm(
        total=cfg.episodes * cfg.steps,
        unit="step",
        disable=not progress,
        desc=f"collect {cfg.world}",
        dynamic_ncols=True,
        mininterval=0.5,
    )
    run = _run_in_workers if min(cfg.workers, len(groups)) > 1 else _run_here
    solved = []
    # Signals set a flag read between steps: the default handler's KeyboardInterrupt can be
    # raised inside a callback, where Python drops it, and the collection would run on.
    stop = []

    def on_step(n: int) -> None:
        bar.update(n)
        if stop[0].set:
            raise KeyboardInterrupt(f"stopped; nothing was written to {out}")

    try:
        with EpisodeWriter(out, attrs, force=force, compression=cfg.compression) as writer:
            stop.append(StopFlag())  # inside the writer: its handlers are the ones replaced
            try:
                _write_groups(writer, run(cfg, groups, on_step), solved, bar, stop[0], out)
            finally:
                stop[0].restore()
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    rows = cfg.episodes * (cfg.steps + 1)
    return {"path": str(out), "episodes": cfg.episodes, "rows": rows, "seconds": seconds,
            "steps_per_s": cfg.episodes * cfg.steps / seconds,
            "episodes_solved": float(np.mean(solved)), "policy": cfg.policy}


def _write_groups(writer, groups, solved: list, bar, stop, out) -> None:
    """Add each collected group's episodes in order; a stop request ends the collection with
    nothing under the final name (the writer removes its temporary file)."""
    for indices, episodes, group_solved in groups:
        if stop.set:
            raise KeyboardInterrupt(f"stopped; nothing was written to {out}")
        for episode in episodes:
            writer.add(episode)
        solved += group_solved
        bar.set_postfix(episodes=indices[-1] + 1, solved=f"{np.mean(solved):.0%}")
    # How often the policy reached the episode's own goal: the quality of the data.
    writer.attrs["episodes_solved"] = float(np.mean(solved))


def _run_here(cfg: CollectConfig, groups, on_step):
    """Yield (indices, episodes, solved) for each group in turn, collected in this process."""
    envs = [make_env(cfg.world, cfg.size) for _ in range(min(cfg.num_envs, cfg.episodes))]
    try:
        policies = [make_policy(cfg.world, cfg.policy, env, cfg.noise_std) for env in envs]
        for indices in groups:
            episodes, solved = rollout_group(envs, policies, indices, cfg, on_step=on_step)
            yield indices, episodes, solved
    finally:
        for env in envs:
            env.close()  # MuJoCo worlds free their GL contexts now, not at exit


def _run_in_workers(cfg: CollectConfig, groups, on_step):
    """Yield what `_run_here` yields, in the same order, with the groups dealt round-robin to
    `cfg.workers` processes. Spawned, not forked: a forked GL context is not safe to use."""
    import multiprocessing as mp
    import queue as queue_errors

    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    n = min(cfg.workers, len(groups))
    workers = [ctx.Process(target=_worker, args=(cfg, groups, w, n, messages), daemon=True)
               for w in range(n)]
    for p in workers:
        p.start()
    ready = {}
    try:
        for g in range(len(groups)):
            while g not in ready:
                try:
                    msg = messages.get(timeout=5.0)
                except queue_errors.Empty:
                    dead = [p for p in workers if p.exitcode not in (None, 0)]
                    if dead:
                        raise LewmError(f"a collection worker died (exit code "
                                        f"{dead[0].exitcode}); nothing was written") from None
                    continue
                if msg[0] == "steps":
                    on_step(msg[1])
                elif msg[0] == "group":
                    ready[msg[1]] = msg[2:]
                elif msg[0] == "error":
                    raise LewmError(msg[1])
            yield groups[g], *ready.pop(g)
    finally:
        for p in workers:
            if p.is_alive():
                p.terminate()
            p.join()
        messages.close()


def _worker(cfg: CollectConfig, groups, w: int, n: int, messages) -> None:
    """Collect groups w, w + n, w + 2n, ... and send each back whole, with step counts for
    the parent's progress bar; an error is sent as its one-line message."""
    try:
        mine = [groups[g] for g in range(w, len(groups), n)]
        for k, (_, episodes, solved) in enumerate(
                _run_here(cfg, mine, lambda steps: messages.put(("steps", steps)))):
            messages.put(("group", w + k * n, episodes, solved))
    except LewmError as e:
        messages.put(("error", str(e)))
    except Exception as e:  # noqa: BLE001 - reported by the parent, which stops the others
        messages.put(("error", f"collection worker {w}: {type(e).__name__}: {e}"))
