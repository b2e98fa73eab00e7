"""Planning and training speed of lewm beside the authors' LeWM (stable-worldmodel), on the
same weights, in one process, interleaved: each repetition times lewm then the peer.

    pip install -e '.[parity,worlds]' && pip install --no-deps stable-worldmodel==0.1.1
    python bench/vs_authors.py [--reps 5] [--paper-iterations 1] [--device cpu]

Planning: the paper's CEM (300 samples, 30 elites, horizon 5, the current frame as context)
with each side's own solver: lewm's `cem` + `latent_cost`, the peer's `CEMSolver` +
`LeWM.get_cost`. Both start from the same context and goal embeddings (each solver encodes
its frames once per plan, outside what is timed here). A CEM iteration does the same work
every time, so each model is timed for fewer iterations (`--paper-iterations`,
`--small-iterations`) and scaled to 30 (the result file says so). The peer plans
`batch_size` episodes at a time; the fastest of `--peer-batches` is used for 50 episodes.

Training: one optimisation step (forward, prediction MSE + 0.09 SIGReg, backward, AdamW) at
the paper batch (128 clips of 4 frames), lewm's `loss_terms` against the peer's modules with
its `SIGReg`.
"""

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from common import RESULTS, save
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import peer  # noqa: E402  (the test suite's loader of the authors' modules)

from lewm.losses import loss_terms  # noqa: E402
from lewm.model import LeWM  # noqa: E402
from lewm.model.authors import to_authors  # noqa: E402
from lewm.planning.cem import cem, episode_generators  # noqa: E402
from lewm.planning.config import CEMConfig, RuntimeConfig  # noqa: E402
from lewm.planning.cost import latent_cost  # noqa: E402
from lewm.recipes import get_recipe  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=5)
p.add_argument("--episodes", type=int, default=50)
p.add_argument("--paper-iterations", type=int, default=1,
               help="CEM iterations timed for the paper model on a CPU (scaled to 30)")
p.add_argument("--small-iterations", type=int, default=10,
               help="CEM iterations timed for the tworoom-cpu model (scaled to 30)")
p.add_argument("--peer-batches", default="1,10,50", help="the peer's batch_size values tried")
p.add_argument("--train-batch", type=int, default=128)
p.add_argument("--sizes", default="tworoom-cpu,paper")
p.add_argument("--device", default="cpu")
p.add_argument("--no-train", action="store_true")
p.add_argument("--compiled", action="store_true",
               help="also time lewm's bf16 rollouts through torch.compile (lewm eval --compile)")
p.add_argument("--no-plan", action="store_true",
               help="time the training steps only; the result file keeps its other rows")
args = p.parse_args()
device = torch.device(args.device)
lib = peer.load()
CEMSolver = peer.cem_solver()


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def peer_model(cfg, encoder: nn.Module):
    """The authors' LeWM with lewm's `cfg` sizes (their modules; `encoder` as given)."""
    m = lib.module
    return lib.LeWM(
        encoder=encoder,
        predictor=m.Predictor(num_frames=cfg.history, depth=cfg.pred_depth, heads=cfg.pred_heads,
                              mlp_dim=cfg.pred_mlp, input_dim=cfg.embed_dim,
                              hidden_dim=cfg.embed_dim, output_dim=cfg.embed_dim,
                              dim_head=cfg.pred_head_dim, dropout=cfg.dropout, emb_dropout=0.0),
        action_encoder=m.Embedder(input_dim=cfg.frameskip * cfg.action_dim,
                                  smoothed_dim=cfg.act_channels, emb_dim=cfg.embed_dim,
                                  mlp_scale=cfg.act_hidden // cfg.embed_dim),
        projector=m.MLP(cfg.enc_dim, cfg.proj_hidden, cfg.embed_dim, norm_fn=nn.BatchNorm1d),
        pred_proj=m.MLP(cfg.embed_dim, cfg.proj_hidden, cfg.embed_dim, norm_fn=nn.BatchNorm1d),
    )


def pair(name: str):
    """(lewm model, peer model) with the same random weights; the peer's encoder is left out
    (planning starts from embeddings)."""
    torch.manual_seed(0)
    ours = LeWM(get_recipe(name).train.model).eval()
    peer.randomize(ours, 0)
    theirs = peer_model(ours.cfg, nn.Identity()).eval()
    mine = {k: v for k, v in ours.state_dict().items() if not k.startswith("encoder.")}
    state = to_authors(mine)
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return ours.to(device), theirs.to(device)


def plan_lewm(model, ctx, goal, iterations, precision="fp32", compiled=False):
    B = ctx.shape[0]
    blk = model.cfg.frameskip * model.cfg.action_dim
    cost = latent_cost(model, ctx, None, goal, runtime=RuntimeConfig(precision, compiled))
    cem(cost, B, blk, CEMConfig(iterations=iterations), episode_generators(0, range(B)), device,
        horizon=5)


def plan_peer(model, cfg, ctx, goal, iterations, batch_size):
    """cfg: the ModelConfig of the sizes (frameskip, action_dim) the peer model was built with."""
    B, D = ctx.shape[0], ctx.shape[-1]
    solver = CEMSolver(model, batch_size=batch_size, num_samples=300, var_scale=1.0,
                       n_steps=iterations, topk=30, device=device, seed=0)
    fs, A = cfg.frameskip, cfg.action_dim
    from gymnasium.spaces import Box

    solver.configure(action_space=Box(-1.0, 1.0, shape=(B, A)), n_envs=B,
                     config=SimpleNamespace(horizon=5, action_block=fs))
    dummy = torch.zeros(B, 1, 1, device=device)  # `pixels`/`goal` only give the context length
    info = {"pixels": dummy, "goal": dummy, "emb": ctx.view(B, 1, D),
            "goal_emb": goal.view(B, 1, D)}
    with contextlib.redirect_stdout(io.StringIO()):  # the solver prints its solve time
        solver.solve(info)


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def count_flops(fn) -> int:
    """Matmul/attention FLOPs of fn(), as torch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(dtype, n: int = 4096, reps: int = 5) -> float:
    """Measured FLOP/s of a large square matmul: the machine's practical peak."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best


def summary(seconds: list[float], scale: float, per: int = 1) -> dict:
    ms = [1000 * s * scale / per for s in seconds]
    return {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1),
            "reps": len(ms)}


def interleaved(runs: dict, scale: float = 1.0, per: int = 1) -> dict:
    """`--reps` timings of each of `runs` (name -> fn, one of them "peer"), interleaved, as
    `summary`s, with every lewm run's speed-up over the peer's median."""
    t = {k: [] for k in runs}
    for _ in range(args.reps):
        for k, fn in runs.items():
            t[k].append(timed(fn))
    out = {k: summary(v, scale, per) for k, v in t.items()}
    for k in runs:
        if k != "peer":
            out[f"speedup_{k}_vs_peer"] = round(out["peer"]["median_ms"] / out[k]["median_ms"], 2)
    return out


class HFStyle(nn.Module):
    """Wraps a module mapping images to features as `encoder(x, ...).last_hidden_state[:, 0]`."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, **_):
        return SimpleNamespace(last_hidden_state=self.net(x)[:, None])


def bench_planning(name: str, ours, theirs) -> dict:
    big = name != "tworoom-cpu" and device.type == "cpu"
    iters = args.paper_iterations if big else args.small_iterations
    scale = 30 / iters
    g = torch.Generator().manual_seed(1)
    D, E = ours.cfg.embed_dim, args.episodes
    ctx = torch.randn(E, 1, D, generator=g).to(device)
    goal = torch.randn(E, D, generator=g).to(device)
    row = {"cem_iterations_timed": iters, "scaled_to_iterations": 30}
    # The work of one episode-plan (30 iterations of 300 candidates), counted by torch.
    flops = {"lewm": count_flops(partial(plan_lewm, ours, ctx[:1], goal[:1], 1)),
             "peer": count_flops(partial(plan_peer, theirs, ours.cfg, ctx[:1], goal[:1], 1, 1))}
    row["gflop_per_episode_plan"] = {k: round(30 * v / 1e9, 2) for k, v in flops.items()}
    row["machine_limit_ms_per_episode_plan"] = {
        f"{k}_{prec}": round(1000 * 30 * v / PEAK[prec], 1)
        for k, v in flops.items() for prec in PEAK}
    plan_lewm(ours, ctx[:2], goal[:2], 1)  # warm-up
    plan_peer(theirs, ours.cfg, ctx[:2], goal[:2], 1, 2)
    # The peer's fastest batch_size for E episodes, one timing each.
    tries = {b: timed(partial(plan_peer, theirs, ours.cfg, ctx, goal, iters, b))
             for b in map(int, args.peer_batches.split(",")) if b <= E}
    best = min(tries, key=tries.get)
    row["peer_batch_size_tried_ms_per_episode_plan"] = {
        b: round(1000 * s * scale / E, 1) for b, s in tries.items()}
    row["peer_batch_size"] = best
    for episodes in (1, E):
        c, z = ctx[:episodes], goal[:episodes]
        runs = {"lewm": partial(plan_lewm, ours, c, z, iters),
                "lewm_bf16": partial(plan_lewm, ours, c, z, iters, "bf16"),
                "peer": partial(plan_peer, theirs, ours.cfg, c, z, iters, min(best, episodes))}
        if args.compiled:  # `--compile`; its compilation (once per shape) is not timed
            runs["lewm_bf16_compiled"] = partial(plan_lewm, ours, c, z, iters, "bf16", True)
            runs["lewm_bf16_compiled"]()
        out = interleaved(runs, scale, episodes)
        row[f"ms_per_episode_plan_{episodes}_episodes"] = out
        print(name, episodes, out, flush=True)
    return row


def bench_training(name: str, ours) -> dict:
    """One training step at the paper batch, each side with its own loss code."""
    cfg = get_recipe(name).train
    T, S, B = ours.cfg.history + 1, ours.cfg.image_size, args.train_batch
    g = torch.Generator().manual_seed(2)
    pixels = torch.randint(0, 256, (B, T, S, S, 3), generator=g, dtype=torch.uint8).to(device)
    blk = ours.cfg.frameskip * ours.cfg.action_dim
    actions = torch.randn(B, T, blk, generator=g).to(device)
    if ours.cfg.encoder == "vit":
        full = peer.build(lib, ours.cfg.action_dim, ours.cfg.frameskip, ours.cfg.history)
    else:  # lewm's CNN as the peer's encoder, behind the HF-style interface it calls
        full = peer_model(ours.cfg, HFStyle(LeWM(ours.cfg).encoder))
    full = full.to(device).train()
    ours.train()
    sig = lib.SIGReg(knots=17, num_proj=cfg.num_proj).to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 1, 3, 1, 1)
    opt_o = torch.optim.AdamW(ours.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    opt_p = torch.optim.AdamW(full.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step_lewm(bf16=False):
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            terms = loss_terms(ours, pixels, actions, cfg, torch.Generator().manual_seed(0))
        opt_o.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt_o.step()

    def step_peer():  # the authors' training forward, written out with their modules
        x = (pixels.permute(0, 1, 4, 2, 3).float() / 255 - mean) / std
        info = full.encode({"pixels": x, "action": actions})
        emb, act_emb = info["emb"], info["act_emb"]
        h = ours.cfg.history
        pred = full.predict(emb[:, :h], act_emb[:, :h])
        loss = (pred - emb[:, 1:]).pow(2).mean() + cfg.lambd * sig(emb.transpose(0, 1))
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()

    runs = {"lewm": step_lewm, "lewm_bf16": partial(step_lewm, True), "peer": step_peer}
    for fn in runs.values():  # warm-up
        fn()
    out = interleaved(runs)  # lewm_bf16: `--set precision=bf16` (autocast)
    out["batch"] = B
    print(name, "train", out, flush=True)
    return out


PEAK = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
print("matmul peak GFLOP/s", {k: round(v / 1e9) for k, v in PEAK.items()}, flush=True)
tag = "cuda" if device.type == "cuda" else "cpu"
previous = RESULTS / f"vs_authors_{tag}.json"
# A partial run (--no-plan or --no-train) updates what it measured in the existing file.
partial_run = (args.no_plan or args.no_train) and previous.exists()
kept = json.loads(previous.read_text()) if partial_run else {}
results = kept.get("models", {})
for name in args.sizes.split(","):
    ours, theirs = pair(name)
    if not args.no_plan:
        with torch.inference_mode():
            train_row = results.get(name, {}).get("train_step")
            results[name] = bench_planning(name, ours, theirs)
            if train_row is not None:
                results[name]["train_step"] = train_row
    if not args.no_train:
        results.setdefault(name, {})["train_step"] = bench_training(name, ours)

this = " ".join(["python", "bench/vs_authors.py", *sys.argv[1:]])
command = f"{kept['command']}; then {this}" if kept else this
save(f"vs_authors_{tag}", {"command": command, **({"note": kept["note"]} if "note" in kept else {}),
                           "peer": f"stable-worldmodel {peer.version()}", "device": str(device),
                           "matmul_peak_gflops": {k: round(v / 1e9) for k, v in PEAK.items()},
                           "cem": "300 samples, 30 elites, 30 iterations, horizon 5, "
                           "1 context frame", "models": results})
