"""Training LeWM from pixels: L = MSE(pred, next embedding) + lambda * SIGReg(embeddings).

No stop-gradient, no EMA target, no pretrained encoder: the prediction loss flows into both
the context and the target embeddings, and SIGReg alone keeps them from collapsing.
Runs on CPU (fp32 by default, bf16 autocast with `precision=bf16`), CUDA (bf16 autocast by
default), MPS, and under `torchrun` (DDP; SIGReg gathers the global batch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lewm import __version__
from lewm.checkpoint import find_checkpoint, read_meta, save_checkpoint
from lewm.data.clips import (
    ClipDataset,
    EpisodeData,
    batch_indices,
    clip_starts,
    fit_stats,
    split_episodes,
)
from lewm.data.prefetch import as_tensors, prefetcher
from lewm.devices import Dist, resolve_device
from lewm.diagnostics import collapse_stats
from lewm.errors import LewmError
from lewm.io import write_json
from lewm.locks import exclusive, lock_file
from lewm.losses import loss_terms, sigreg
from lewm.model import LeWM, ModelCard
from lewm.model.lewm import window_clips
from lewm.model.normalize import ZScore
from lewm.planning.config import PlanConfig, run_plan
from lewm.rundir import MetricsLog, prepare_run_dir
from lewm.signals import StopFlag
from lewm.trainconfig import TrainConfig, from_dict, to_dict, total_steps
from lewm.validate import check_model_fits

RECIPE_SECTIONS = ("recipe", "actor", "plans")
"""what config.json keeps of the recipe a run follows, beside its train and plan sections"""


def recipe_sections(recipe) -> dict:
    """config.json's record of `recipe` (a lewm.recipes.Recipe, or None): its name, its actor
    settings and its other planners' plans, by planner."""
    if recipe is None:
        return {}
    return {"recipe": recipe.name, "actor": dataclasses.asdict(recipe.actor),
            "plans": {p.planner: dataclasses.asdict(p) for p in recipe.acting}}


def lr_factor(step: int, cfg: TrainConfig, steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio at `steps`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw(params, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """The paper's AdamW, with torch's fused kernel on CPUs and CUDA: the same update in one
    pass over all parameters instead of a dozen small operations per tensor (which cost a
    CPU step several percent)."""
    fused = True if torch.device(device).type in ("cpu", "cuda") else None
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def trains_in_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """`precision`: bf16 autocast when asked, or by default (auto) on CUDA; fp32 otherwise."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def sigreg_generator(seed: int, step: int) -> torch.Generator:
    """Directions are redrawn every step, identically on every rank, and are a function of
    (seed, step) alone so that a resumed run draws the same ones."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


@dataclass
class RunData:
    """The train and validation clips of a run and what the checkpoint records about them."""

    train: ClipDataset
    val: ClipDataset | None
    stats: dict
    info: dict = field(default_factory=dict)


def load_run_data(cfg: TrainConfig, data_path) -> RunData:
    data = EpisodeData(data_path, camera=cfg.camera or None)
    m = cfg.model
    if data.action_dim != m.action_dim:
        raise LewmError(f"{data_path}: actions are {data.action_dim}-D but the preset expects "
                        f"{m.action_dim}-D (--set model.action_dim={data.action_dim})")
    if data.image_size != (m.image_size, m.image_size):
        raise LewmError(f"{data_path}: images are {data.image_size[0]}x{data.image_size[1]} but "
                        f"the preset expects {m.image_size} px (collect with --size "
                        f"{m.image_size}, or --set model.image_size={data.image_size[0]})")
    world = str(data.attrs.get("world", cfg.world))
    if world != cfg.world:
        raise LewmError(f"{data_path}: collected in world {world!r} but the config is for "
                        f"{cfg.world!r} (use a {world} preset, or --set world={world})")
    train_eps, val_eps = split_episodes(data.num_episodes, cfg.val_fraction, cfg.seed)
    stats = fit_stats(data, train_eps)
    # Training rows are windows of consecutive clips (one clip when clips_per_window is 1);
    # validation keeps independent clips, so its figures mean the same for every setting.
    train = ClipDataset(data, train_eps, cfg.window_frames, m.frameskip, stats)
    val = ClipDataset(data, val_eps, cfg.clip_frames, m.frameskip, stats) if len(val_eps) else None
    info = {
        "path": str(Path(data_path).resolve()), "episodes": data.num_episodes,
        "image_size": m.image_size, "action_dim": data.action_dim,
        "world": str(data.attrs.get("world", cfg.world)),
        "val_episodes": val_eps.tolist(),
        "train_clips": int(clip_starts(data.ep_len[train_eps], cfg.clip_frames,
                                       m.frameskip).sum()),
        "val_clips": len(val) if val else 0, "fingerprint": data_fingerprint(data),
        "perturb_families": training_families(data.attrs.get("distractors", "")),
        "camera": getattr(data.file, "camera", None),
    }
    return RunData(train, val, stats, info)


def clip_augmenter(cfg):
    """`cfg.augment` as a function (clips (B, T, H, W, 3) uint8, seed) -> the clips each seen
    through a scene of its own (lewm.perturb; frame t of a clip at the scene's time t), or
    None. The floor is found by the world's floor colour, so the floor families need a
    world that draws a flat floor."""
    from lewm.data.config import distractor_specs

    specs = distractor_specs(cfg.augment)
    if not specs:
        return None
    import importlib

    from lewm.perturb import floor_weights, parse
    from lewm.worlds import WORLDS

    module, name = WORLDS[cfg.world].env.split(":")
    floor_rgb = getattr(importlib.import_module(module), name).floor_rgb
    if floor_rgb is None and any(s != "none" and parse(s).paints_floor for s in specs):
        raise LewmError(f"augment={cfg.augment!r}: world {cfg.world} has no flat floor for "
                        "the floor families to paint")

    def augment(clips: np.ndarray, seed) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        out = clips.copy()
        size = clips.shape[2]
        for b, clip in enumerate(clips):
            spec = specs[int(rng.integers(len(specs)))]
            if spec == "none":
                continue
            scene = parse(spec).scene(rng.integers(2**63, size=2), size)
            for t, frame in enumerate(clip):
                floor = floor_weights(frame, floor_rgb) if floor_rgb is not None else None
                out[b, t] = scene.apply(frame, t, floor)
        return torch.from_numpy(out)

    return augment


def invariance_loss(model, seen: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """MSE between the embeddings of the clips seen through their scenes (B, T, H, W, 3)
    and the clean clips' embeddings (B, T, D) of this step (without gradient: the clean
    side is the anchor). Windows of clips (`seen` longer than the clips) are scored as the
    clips they hold, like the LeWM loss."""
    emb = model.encode(seen)
    if emb.shape[1] > clean.shape[1]:
        emb = window_clips(emb, clean.shape[1])
    return F.mse_loss(emb.float(), clean.detach().float())


def training_families(distractors) -> list[str]:
    """The perturbation families an episode file was rendered with (`lewm collect
    --distractors`), so that `lewm robustness` can say which of its scenes were held out."""
    from lewm.data.config import distractor_specs

    return sorted({s.split(":")[0] for s in distractor_specs(str(distractors or ""))} - {"none"})


def data_fingerprint(data: EpisodeData) -> str:
    """SHA-256 of an episode file's episode table and actions: cheap to recompute, and
    different for a re-collected or another dataset at the same path (`--resume` checks)."""
    h = hashlib.sha256()
    for a in (data.ep_len, data.ep_offset, data.action, np.asarray(data.image_size)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def to_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.from_numpy(batch["pixels"]).to(device, non_blocking=True)  # uint8
    actions = torch.from_numpy(batch["action"]).to(device, non_blocking=True)
    return pixels, actions


@torch.no_grad()
def ema_update(target: LeWM, model: LeWM, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * model, for the encoder and projector
    (the only parts whose output the target provides); BatchNorm statistics are copied."""
    for part in ("encoder", "projector"):
        online, tgt = getattr(model, part), getattr(target, part)
        for p_t, p in zip(tgt.parameters(), online.parameters()):
            p_t.lerp_(p, 1 - momentum)
        for b_t, b in zip(tgt.buffers(), online.buffers()):
            b_t.copy_(b)


@torch.no_grad()
def validate(model: LeWM, val: ClipDataset, cfg: TrainConfig, device, autocast) -> dict:
    """Prediction loss, SIGReg and collapse diagnostics on a fixed set of validation clips."""
    was_training = model.training
    model.eval()
    # A fixed random subset: consecutive clips overlap, so evenly spaced ones would make
    # batches of a few episodes each and inflate the batch statistic SIGReg.
    n = min(cfg.val_clips, len(val))
    idx = np.random.default_rng(cfg.seed).choice(len(val), size=n, replace=False)
    losses, regs, embs = [], [], []
    for i, start in enumerate(range(0, len(idx), cfg.batch_size)):
        pixels, actions = to_device(val.batch(idx[start : start + cfg.batch_size]), device)
        with autocast():
            emb, pred = model(pixels, actions)
        emb, pred = emb.float(), pred.float()
        losses.append(F.mse_loss(pred, emb[:, 1 : pred.shape[1] + 1]).item() * len(emb))
        regs.append(sigreg(emb.transpose(0, 1), cfg.num_proj, sigreg_generator(-1, i),
                           gather=False).item())
        embs.append(emb.flatten(0, 1).cpu())
    model.train(was_training)
    return {"pred_loss": sum(losses) / len(idx), "sigreg": float(np.mean(regs)),
            **collapse_stats(torch.cat(embs))}


def train(cfg: TrainConfig | None, data_path, out, *, force: bool = False,
          resume: bool = False, progress: bool = True, stop_after: int | None = None,
          prepared: bool = False, force_data: bool = False, threads: int | None = None,
          plan: PlanConfig | None = None, recipe=None, loggers: tuple = ()) -> dict:
    """Train a LeWM; returns a summary. With `resume`, the config and data come from the run
    directory's checkpoint. `stop_after` stops (and checkpoints) after that many steps of
    this call, as Ctrl-C does; `--resume` continues from there. `prepared`: the caller has
    already made the run directory with `prepare_run_dir`. `force_data`: resume although the
    dataset differs from the one the run started on (its fingerprint in config.json).
    `threads`: CPU threads for this call in place of the config's (a setting of the machine,
    not of the model, so a resumed run may change it: e.g. 1 while another job has a core).
    `plan`: how the run acts by default (its recipe's), kept in config.json for `lewm eval`.
    `recipe`: the lewm.recipes.Recipe it follows; config.json then also keeps its name, its
    actor settings (for `lewm train-actor`) and its other planners' plans, and `plan`
    defaults to its plan. `loggers`: more destinations for the curves beside metrics.jsonl
    and TensorBoard ("wandb").

    The run directory is locked for the whole run: a second `train` of it (or `--force` over
    it) is refused while this one lives."""
    if threads is not None and threads < 0:
        raise LewmError(f"--threads must be >= 0, got {threads}")
    if recipe is not None:
        plan = plan or recipe.plan
    args = (cfg, data_path, out, force, resume, progress, stop_after, prepared, force_data,
            threads, plan, recipe, tuple(loggers))
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(*args)  # under torchrun rank 0 holds the lock
    out = Path(out)
    if resume:
        find_checkpoint(out)  # before making anything
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(out, "trained"):
            return _train(*args)
    except LewmError:
        # A failed start leaves nothing that blocks the corrected command.
        if fresh and out.is_dir() and {p.name for p in out.iterdir()} <= {lock_file(out).name}:
            shutil.rmtree(out)
        raise


def _train(cfg, data_path, out, force, resume, progress, stop_after, prepared,
           force_data=False, threads=None, plan=None, recipe=None, loggers=()) -> dict:
    # Under torchrun only rank 0 prepares the directory; the others wait for it below.
    first_rank = int(os.environ.get("RANK", "0")) == 0
    run_dir = Path(out) if prepared or not first_rank else prepare_run_dir(out, force, resume)
    state, kept = None, recipe_sections(recipe)
    if resume:
        meta = read_meta(run_dir)
        kept = {k: meta[k] for k in RECIPE_SECTIONS if k in meta}
        cfg, plan = from_dict(meta["train"]), run_plan(meta)
        if not data_path and not Path(meta["data"]["path"]).exists():
            raise LewmError(f"{meta['data']['path']}: the run's dataset is not there; if it "
                            "moved, pass its new path with --data (its fingerprint is checked)")
        data_path = data_path or meta["data"]["path"]
        resume_file = find_checkpoint(run_dir) / "resume.pt"
        if not resume_file.exists():
            raise LewmError(f"{resume_file}: missing, so the run cannot be resumed (the weights "
                            "still load with lewm.load)")
        try:
            state = torch.load(resume_file, weights_only=False)
            state["step"], state["optimizer"], state["scheduler"]  # noqa: B018 (must exist)
        except Exception as e:  # a truncated or damaged file: torch raises many types
            raise LewmError(f"{resume_file}: damaged, so the run cannot be resumed "
                            f"({type(e).__name__}); the weights still load with lewm.load"
                            ) from None
    threads = cfg.threads if threads is None else threads
    if threads > 0:
        torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    dist_ctx = Dist.from_env(device.type)
    if device.type == "cuda" and dist_ctx.world > 1:
        device = torch.device("cuda", dist_ctx.local_rank)
        torch.cuda.set_device(device)
    if dist_ctx.world > 1:
        torch.distributed.barrier()
    if cfg.batch_size % (dist_ctx.world * cfg.clips_per_window):
        raise LewmError(f"batch_size {cfg.batch_size} is not divisible by {dist_ctx.world} ranks "
                        f"x clips_per_window {cfg.clips_per_window}")

    run = load_run_data(cfg, data_path)
    if resume:
        recorded = meta["data"].get("fingerprint")  # absent in runs started before it was kept
        if recorded is not None and recorded != run.info["fingerprint"] and not force_data:
            raise LewmError(f"{data_path}: not the dataset this run was trained on (its episodes "
                            "or actions changed); resume with the original file, start a new "
                            "run, or pass --force-data to continue on it knowingly")
    steps = total_steps(cfg, run.info["train_clips"])
    torch.manual_seed(cfg.seed)
    check_model_fits(cfg.model, True, f"training this model ({cfg.model.rough_parameters():,} "
                     "parameters)")
    model = LeWM(cfg.model).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = adamw(model.parameters(), cfg, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, steps))
    target = None
    if cfg.regularizer == "ema":
        import copy

        target = copy.deepcopy(model).requires_grad_(False)
    start, earlier_seconds = 0, 0.0  # earlier_seconds: training time before a resume
    if state is not None:
        from lewm.checkpoint import load_model

        model.load_state_dict(load_model(run_dir).state_dict())
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)  # dropout draws on the GPU
        if target is not None:
            target.load_state_dict(state["ema_target"])
        start = state["step"]
        earlier_seconds = state.get("train_seconds", 0.0)
    if start >= steps:
        raise LewmError(f"{run_dir}: training already finished ({start}/{steps} steps)")

    step_model = model
    if device.type == "cuda" and dist_ctx.world > 1:
        step_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if dist_ctx.world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        step_model = torch.compile(step_model)
    use_bf16 = trains_in_bf16(cfg, device)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    meta = {"train": to_dict(cfg), "plan": dataclasses.asdict(plan or PlanConfig()),
            "data": run.info, "parameters": params, "steps": steps, **kept}
    # The card a checkpoint of this run loads with (its JSON types: lists, not tuples).
    model.card = ModelCard.from_checkpoint(json.loads(json.dumps(meta)),
                                           ZScore.per_column(run.stats))
    log = MetricsLog(run_dir, dist_ctx.main, resume_step=start if resume else None,
                     wandb_config=meta if "wandb" in loggers else None)
    if dist_ctx.main and not resume:
        write_json(run_dir / "config.json", {"lewm_version": __version__, **meta})

    def checkpoint(step: int) -> None:
        if dist_ctx.main:
            resume_state = {"step": step, "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                            "cuda_rng": (torch.cuda.get_rng_state(device)
                                         if device.type == "cuda" else None),
                            "train_seconds": earlier_seconds + time.perf_counter() - t_start}
            if target is not None:
                resume_state["ema_target"] = target.state_dict()
            save_checkpoint(run_dir / "checkpoint", model, {**meta, "step": step}, run.stats,
                            resume_state)
        model.card = dataclasses.replace(model.card, step=step)

    local_batch = cfg.batch_windows // dist_ctx.world  # rows read: windows of clips
    end = steps if stop_after is None else min(steps, start + stop_after)
    bar = tqdm(total=steps, initial=start, disable=not (progress and dist_ctx.main),
               desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
    model.train()
    t_start = t_log = time.perf_counter()
    frames_since = 0
    last_val: dict = {}
    step = start
    stop = StopFlag()

    augment = clip_augmenter(cfg)
    if cfg.invariance and dist_ctx.world > 1:
        raise LewmError("invariance encodes the augmented clips outside the DDP forward: "
                        "train it on one process")

    def read_batch(step: int) -> tuple[torch.Tensor, ...]:
        idx = batch_indices(len(run.train), cfg.batch_windows, cfg.seed, step)
        idx = idx[dist_ctx.rank * local_batch : (dist_ctx.rank + 1) * local_batch]
        pixels, actions = as_tensors(run.train.batch(idx))
        if augment is None:
            return pixels, actions
        seen = augment(pixels.numpy(), [cfg.seed, step, dist_ctx.rank])
        if cfg.invariance == 0:
            return seen, actions
        return pixels, actions, seen

    batches = prefetcher(read_batch, range(start, end), depth=2, pin=device.type == "cuda",
                         workers=cfg.workers, worker_init=run.train.data.reopen,
                         ignore_signals=StopFlag.SIGNALS)
    try:
        for step, (pixels, actions, *seen) in batches:
            if dist_ctx.any(stop.set, device):  # every rank stops at the same step
                break
            pixels = pixels.to(device, non_blocking=True)
            actions = actions.to(device, non_blocking=True)
            with autocast():
                clean = []
                terms = loss_terms(step_model, pixels, actions, cfg,
                                   sigreg_generator(cfg.seed, step), target, clean)
                if seen:
                    terms["invariance"] = invariance_loss(model, seen[0].to(device), clean[0])
                    terms["loss"] = terms["loss"] + cfg.invariance * terms["invariance"]
            loss = terms["loss"]
            if not torch.isfinite(loss):
                kept = (f"the last good checkpoint is in {run_dir / 'checkpoint'}"
                        if (run_dir / "checkpoint").exists() else "no checkpoint was written")
                raise LewmError(f"loss became {loss.item()} at step {step}; stopped, {kept} "
                                "(try a lower lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            if target is not None:
                ema_update(target, model, cfg.ema_momentum)
            frames_since += cfg.batch_size * cfg.clip_frames  # clips' frames, as one by one
            done = step + 1
            if done % cfg.log_every == 0 or done == steps:
                now = time.perf_counter()
                values = {k: v.item() for k, v in terms.items()}
                values.update(lr=sched.get_last_lr()[0], grad_norm=float(grad_norm),
                              frames_per_s=frames_since / (now - t_log))
                log.write("train", done, values)
                t_log, frames_since = now, 0
                bar.set_postfix(loss=f"{values['loss']:.4f}", pred=f"{values['pred_loss']:.4f}")
            # Validation on one rank only: the others would repeat it on the same clips.
            if dist_ctx.main and run.val is not None and (done % cfg.val_every == 0
                                                          or done == steps):
                last_val = validate(model, run.val, cfg, device, autocast)
                log.write("val", done, last_val)
            if done % cfg.ckpt_every == 0 and done != end:
                checkpoint(done)
            bar.update(1)
        else:
            step = end
    finally:
        batches.close()
        bar.close()
        stop.restore()
    seconds = earlier_seconds + time.perf_counter() - t_start  # over every resume
    meta["train_seconds"] = seconds
    checkpoint(step)
    log.close()
    summary = {"run_dir": str(run_dir), "step": step, "steps": steps,
               "finished": step >= steps, "seconds": seconds, "parameters": params,
               "val": last_val, "model": model.eval()}
    if dist_ctx.main and step >= steps:
        from lewm.plots import plot_training

        plot_training(run_dir / "metrics.jsonl", run_dir / "curves.png")
    if stop.set:
        raise KeyboardInterrupt(f"stopped at step {step}; continue with "
                                f"`lewm train --resume {run_dir}`")
    return summary
