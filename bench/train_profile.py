"""Where a CPU recipe's training step goes: the real loop's time per step, each part's share
(data, encoder convolutions forward and backward, normalisation, activations, SIGReg, the
predictor's matmuls, the optimiser), each part's FLOPs and achieved GFLOP/s, against the
machine's measured matmul peak at the same thread count.

    python bench/train_profile.py [--presets tworoom-cpu reacher-cpu pusht-cpu]
        [--variants fp32 bf16] [--episodes 12] [--steps 30] [--threads 2] [--tag NAME]

Each preset trains on a small dataset collected with its recipe's settings (`--episodes`
episodes; batches are read from the file exactly as in `lewm train`). Two timings per preset:
`lewm.train.train` itself for `--steps` steps (its own metrics' frames/s, validation and
checkpoints pushed past the end), and the same step run here under torch.profiler, split
into parts by operator. They must agree; the profile is of what `lewm train` does. Each
`--variants` entry is a precision (`--set precision=...`: fp32, or bf16 autocast) or
`windowK`: fp32 with K clips per window (`--set clips_per_window=K`: each frame encoded once
for the K clips that hold it), measured in the same run so that they compare.
Writes bench/results/train_profile_cpu[_NAME].json, saved after every preset.
"""

import argparse
import dataclasses
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from common import save
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from lewm.data.clips import batch_indices
from lewm.data.collect import collect
from lewm.data.prefetch import as_tensors
from lewm.losses import loss_terms
from lewm.model import LeWM
from lewm.recipes import get_recipe
from lewm.train import adamw, load_run_data, sigreg_generator, train

p = argparse.ArgumentParser()
p.add_argument("--presets", nargs="+", default=["tworoom-cpu", "reacher-cpu", "pusht-cpu"])
p.add_argument("--episodes", type=int, default=12, help="episodes collected per preset")
p.add_argument("--steps", type=int, default=30, help="timed steps (after 5 of warm-up)")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--variants", nargs="+", default=["fp32"],
               help="fp32, bf16 or windowK (K clips per window, fp32)")
p.add_argument("--tag", default="", help="suffix of the result file")
args = p.parse_args()
torch.set_num_threads(args.threads)

# Operators by part of the step: the first pattern contained in an operator's name decides.
PARTS = [
    ("conv backward", ("convolution_backward",)),
    ("conv forward", ("mkldnn_convolution", "aten::convolution", "_convolution")),
    ("norm", ("group_norm", "layer_norm", "batch_norm")),
    ("activation", ("gelu", "silu", "_softmax")),
    ("sigreg trig", ("aten::sin", "aten::cos")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "scaled_dot_product")),
    ("optimizer", ("Optimizer.step", "_foreach", "clip_grad")),
]


def part_of(name: str) -> str:
    for part, patterns in PARTS:
        if any(pat in name for pat in patterns):
            return part
    return "other (elementwise, copies, autograd)"


def peak_gflops(dtype=torch.float32, n=2048, reps=8) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def loop_seconds(cfg, data_path, workdir: Path) -> float:
    """Seconds per step of `lewm train` itself, from its metrics (past the first log)."""
    steps = 5 + args.steps
    cfg = dataclasses.replace(cfg, steps=steps, warmup_steps=1, log_every=5, val_every=10**6,
                              ckpt_every=10**6, threads=args.threads)
    out = workdir / f"run-{cfg.world}"
    train(cfg, data_path, out, force=True, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    fps = [r["frames_per_s"] for r in rows if r["split"] == "train" and r["step"] > 5]
    return cfg.batch_size * cfg.clip_frames / float(np.mean(fps))


def profile_step(cfg, data_path) -> dict:
    run = load_run_data(cfg, data_path)
    torch.manual_seed(cfg.seed)
    model = LeWM(cfg.model)
    opt = adamw(model.parameters(), cfg, "cpu")
    model.train()

    bf16 = cfg.precision == "bf16"

    def step(i: int):
        with record_function("data"):
            pixels, actions = as_tensors(run.train.batch(
                batch_indices(len(run.train), cfg.batch_windows, cfg.seed, i)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            terms = loss_terms(model, pixels, actions, cfg, sigreg_generator(cfg.seed, i))
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
        opt.step()

    for i in range(5):
        step(i)
    with FlopCounterMode(display=False) as counter:
        step(5)
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    conv_flops = sum(n for op, n in by_op.items() if "convolution" in op)
    conv_fwd = sum(n for op, n in by_op.items() if "convolution" in op and "backward" not in op)
    total_flops = counter.get_total_flops()
    start = time.perf_counter()
    for i in range(args.steps):
        step(6 + i)
    eager_s = (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(10):
            step(100 + i)
    times = defaultdict(float)
    data_us = 0.0
    for evt in prof.key_averages():
        if evt.key == "data":
            data_us = evt.cpu_time_total
            continue
        times[part_of(evt.key)] += evt.self_cpu_time_total
    # the data scope's own operators (indexing, copies) are counted under "data", not twice
    times["other (elementwise, copies, autograd)"] = max(
        0.0, times["other (elementwise, copies, autograd)"] - data_us)
    times["data"] = data_us
    total_us = sum(times.values())
    flops_of = {"conv forward": conv_fwd, "conv backward": conv_flops - conv_fwd,
                "matmul": total_flops - conv_flops}
    parts = {}
    for part, us in sorted(times.items(), key=lambda kv: -kv[1]):
        ms = us / 10 / 1000
        row = {"ms_per_step": round(ms, 2), "share": round(us / total_us, 3)}
        if part in flops_of and ms > 0:
            row["gflop"] = round(flops_of[part] / 1e9, 3)
            row["gflop_per_s"] = round(flops_of[part] / 1e9 / (ms / 1000), 1)
        parts[part] = row
    return {"gflop_per_step": round(total_flops / 1e9, 3),
            "conv_gflop_per_step": round(conv_flops / 1e9, 3),
            "s_per_step_here": round(eager_s, 4), "parts": parts,
            "clips": cfg.batch_size, "frames_per_clip": cfg.clip_frames,
            "clips_per_window": cfg.clips_per_window,
            "frames_encoded": cfg.batch_windows * cfg.window_frames,
            "image_size": cfg.model.image_size}


results = {"threads": args.threads, "peak_fp32_gflop_per_s": round(peak_gflops(), 1),
           "peak_bf16_gflop_per_s": round(peak_gflops(torch.bfloat16), 1), "presets": {}}
with tempfile.TemporaryDirectory() as tmp:
    work = Path(tmp)
    for name, variant in ((n, v) for n in args.presets for v in args.variants):
        recipe = get_recipe(name)
        data = work / f"{name}.h5"
        if not data.exists():
            collect(dataclasses.replace(recipe.collect, episodes=args.episodes), data,
                    progress=False)
        if variant.startswith("window"):
            cfg = dataclasses.replace(recipe.train, precision="fp32",
                                      clips_per_window=int(variant[len("window"):]))
        elif variant in ("fp32", "bf16"):
            cfg = dataclasses.replace(recipe.train, precision=variant)
        else:
            raise SystemExit(f"unknown variant {variant!r} (fp32, bf16 or windowK)")
        row = profile_step(cfg, data)
        row["s_per_step_lewm_train"] = round(loop_seconds(cfg, data, work), 4)
        row["steps_per_s_lewm_train"] = round(1 / row["s_per_step_lewm_train"], 2)
        row["achieved_gflop_per_s"] = round(row["gflop_per_step"]
                                            / row["s_per_step_lewm_train"], 1)
        row["fraction_of_fp32_peak"] = round(row["achieved_gflop_per_s"]
                                             / results["peak_fp32_gflop_per_s"], 3)
        row["bound_at_peak_s"] = round(row["gflop_per_step"]
                                       / results["peak_fp32_gflop_per_s"], 4)
        results["presets"][name if variant == "fp32" else f"{name} {variant}"] = row
        print(name, json.dumps(row), flush=True)
        tag = f"_{args.tag}" if args.tag else ""
        save(f"train_profile_cpu{tag}", results)
