"""Planning latency with torch and with onnxruntime on the same run: the pieces a decision is
made of, each timed on the same inputs (median of `--repeats`, after a warm-up).

* encode: one frame (what every decision pays);
* rollout: a CEM iteration's scoring, `--candidates` plans of `--horizon` blocks rolled out
  from the current frame (the predictor, step by step);
* actor: one actor call (`--planner actor`'s whole decision after encoding), if the run has
  an actor.

    python bench/onnx_latency.py RUN [RUN ...] [--threads 2] [--candidates 300] [--horizon 5]

Each run is exported to a temporary directory with `lewm export --format onnx`, checked
against torch (`lewm.export_onnx.verify`), then timed; the figures go to
bench/results/onnx_latency_cpu.json.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import save

from lewm.actor.net import load_actor
from lewm.checkpoint import load_model
from lewm.export_onnx import OnnxModel, export_onnx, verify

p = argparse.ArgumentParser()
p.add_argument("runs", nargs="+")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--candidates", type=int, default=300)
p.add_argument("--horizon", type=int, default=5)
p.add_argument("--repeats", type=int, default=30)
args = p.parse_args()
torch.set_num_threads(args.threads)


def median_ms(fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def measure(run: str) -> dict:
    """The timings of one run, torch beside onnxruntime."""
    model = load_model(run, device="cpu").eval()
    cfg = model.cfg
    S, W, blk = cfg.image_size, cfg.history, cfg.frameskip * cfg.action_dim
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "onnx"
        export_onnx(run, out)
        parity = verify(out, run)
        ort = OnnxModel(out, threads=args.threads)
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (1, S, S, 3), dtype=np.uint8)
        ctx = rng.standard_normal((args.candidates, W, cfg.embed_dim)).astype(np.float32)
        ctx_acts = (rng.standard_normal((args.candidates, W - 1, blk)).astype(np.float32)
                    if W > 1 else None)
        plans = rng.standard_normal((args.candidates, args.horizon, blk)).astype(np.float32)
        t_ctx, t_plans = torch.from_numpy(ctx), torch.from_numpy(plans)
        t_ctx_acts = None if ctx_acts is None else torch.from_numpy(ctx_acts)
        row = {"parity_max_abs": parity}
        with torch.no_grad():
            row["encode_ms"] = {
                "torch": median_ms(lambda: model.encode(torch.from_numpy(frame)[:, None])),
                "onnxruntime": median_ms(lambda: ort.encode(frame))}
            row["rollout_ms"] = {
                "torch": median_ms(lambda: model.rollout(t_ctx, t_ctx_acts, t_plans)),
                "onnxruntime": median_ms(lambda: ort.rollout(ctx, ctx_acts, plans))}
            if "actor" in ort.sessions:
                net, _ = load_actor(run, (model.card.meta or {}).get("model_sha256"))
                z = torch.from_numpy(ctx[:1, -1].copy())
                zn = z.numpy()
                row["actor_ms"] = {"torch": median_ms(lambda: net(z, z, z)),
                                   "onnxruntime": median_ms(lambda: ort.act(zn, zn, zn))}
    row["world"] = model.card.world

    return row


results = {}
for run in args.runs:
    results[run] = measure(run)
    print(run, results[run])

save("onnx_latency_cpu", {"threads": args.threads, "candidates": args.candidates,
                          "horizon": args.horizon, "repeats": args.repeats, "runs": results})
