"""Training throughput (frames/s) of the presets on this machine, on random clips of the
preset's image size: one optimisation step = encode + predict + SIGReg + backward + AdamW.

    python bench/train_throughput.py [--presets tworoom-cpu paper] [--paper-batch 16]
        [--compile] [--bf16] [--tag NAME]

Each preset's `precision` decides, as in `lewm train` (auto: bf16 autocast on GPUs, fp32
on CPUs). `--compile` also times each preset
with the model through torch.compile (as `--set compile=true`); its first steps pay the
compilation (`compile_s`). `--bf16` also times it under bf16 autocast (as
`--set precision=bf16`; on CPUs it pays where they have bf16 matrix units, e.g. AMX).
Writes bench/results/train_throughput_{cpu,cuda}[_NAME].json (a tag keeps a run on other
presets from replacing the default file).
"""

import argparse
import dataclasses
import time

import torch
from common import machine, save

from lewm.losses import loss_terms
from lewm.model import LeWM
from lewm.recipes import get_recipe
from lewm.train import sigreg_generator, trains_in_bf16

p = argparse.ArgumentParser()
p.add_argument("--presets", nargs="+", default=["tworoom-cpu", "paper"])
p.add_argument("--paper-batch", type=int, default=16,
               help="batch for the paper preset on CPU (128 clips per step would take minutes)")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--compile", action="store_true", help="also time the compiled model")
p.add_argument("--bf16", action="store_true", help="also time each preset under bf16 autocast")
p.add_argument("--tag", default="", help="suffix of the result file")
args = p.parse_args()

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def measure(name: str, compiled: bool = False, bf16: bool = False) -> dict:
    cfg = get_recipe(name).train
    if bf16:
        cfg = dataclasses.replace(cfg, precision="bf16")
    slow = name == "paper" and device.type != "cuda"
    batch = args.paper_batch if slow else cfg.batch_size
    steps = 3 if slow else args.steps
    torch.manual_seed(0)
    model = LeWM(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step_model = torch.compile(model) if compiled else model
    S, T = cfg.model.image_size, cfg.clip_frames
    pixels = torch.randint(0, 256, (batch, T, S, S, 3), dtype=torch.uint8, device=device)
    actions = torch.randn(batch, T, cfg.model.frameskip * cfg.model.action_dim, device=device)
    bf16 = trains_in_bf16(cfg, device)

    def step(i):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            terms = loss_terms(step_model, pixels, actions, cfg, sigreg_generator(0, i))
        opt.zero_grad()
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    start = time.perf_counter()
    for i in range(3 if compiled else 1):  # warm-up (compiled: forward, backward, recompiles)
        step(i)
    sync()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        step(i + 3)
    sync()
    seconds = (time.perf_counter() - start) / steps
    return {"batch_clips": batch, "frames_per_step": batch * T, "image_size": S,
            "s_per_step": round(seconds, 3), "frames_per_s": round(batch * T / seconds),
            "timed_steps": steps, "precision": "bf16 autocast" if bf16 else "fp32",
            "compiled": compiled, **({"compile_s": round(warmup, 1)} if compiled else {})}


def record(name: str, row: dict) -> None:
    """Save after every measurement: a run cut short by a time limit keeps what it measured."""
    results[name] = row
    print(name, row, flush=True)
    tag = f"_{args.tag}" if args.tag else ""
    save(f"train_throughput_{'cuda' if device.type == 'cuda' else 'cpu'}{tag}",
         {"device": str(device), "presets": results, "threads": machine()["torch_threads"]})


results = {}
for name in args.presets:
    record(name, measure(name))
    if args.compile:
        record(f"{name} compiled", measure(name, compiled=True))
    if args.bf16 and not trains_in_bf16(get_recipe(name).train, device):
        record(f"{name} bf16", measure(name, bf16=True))
