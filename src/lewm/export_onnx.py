"""`lewm export RUN --format onnx`: a run's model as ONNX graphs, for runtimes outside Python
(onnxruntime on a laptop or a board, an NPU's converter).

Three graphs, each with a dynamic batch:

* `encoder.onnx`: `pixels` uint8 (N, H, W, 3) at the run's image size -> `embeddings` (N, D);
* `predictor.onnx`: one predictor step, `embeddings` (B, W, D) and `actions` (B, W, blk)
  z-scored action blocks, W from 1 to the model's history -> `next` (B, D), the embedding
  after the last block (a rollout feeds it back, the last `history` tokens at a time, as
  `LeWM.rollout` does);
* `actor.onnx` when the run has one (`lewm train-actor`): `z`, `z_prev`, `goal` (B, D) ->
  `block` (B, blk), z-scored.

`manifest.json` names them with their inputs and outputs, the action statistics that turn
z-scored blocks into env actions, and the checkpoint they came from. `verify` replays the
graphs with onnxruntime against the torch model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lewm import __version__
from lewm.errors import LewmError
from lewm.io import refuse_overlap, write_json

OPSET = 18


def require_onnx() -> None:
    missing = [p for p in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(p)
               is None]
    if missing:
        raise LewmError(f"ONNX export needs {', '.join(missing)}: pip install 'lewm[onnx]'")


class EncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels):
        m = self.model
        return m.projector(m.encoder(m.preprocess(pixels)))


class PredictorGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embeddings, actions):
        m = self.model
        h = m.predictor(embeddings, m.embed_actions(actions))
        return m.pred_proj(h[:, -1])


def _export(module, args, names_in, names_out, dynamic, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names_in,
                          output_names=names_out, dynamic_shapes=dynamic, dynamo=True,
                          opset_version=OPSET, verbose=False, external_data=False)


def _io(names, shapes, dtype) -> list[dict]:
    return [{"name": n, "dtype": dtype, "shape": s} for n, s in zip(names, shapes)]


ONNX_FILES = ["encoder.onnx", "predictor.onnx", "actor.onnx", "manifest.json"]


@torch.no_grad()
def export_onnx(run_dir, out, force: bool = False) -> dict:
    """Write the run's graphs and manifest.json into the directory `out`: new or empty, or
    (with `force`) an earlier lewm export; nothing appears under its name until every graph
    is written."""
    require_onnx()
    from lewm.checkpoint import load_model
    from lewm.interop import EXPORT_MARKER, check_export_dir, restore_swapped, swap_in
    from lewm.locks import exclusive

    model = load_model(run_dir, device="cpu").eval()
    out = Path(out)
    refuse_overlap(out, [run_dir])
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "exported", beside=True):
        restore_swapped(out)
        check_export_dir(out, force, ONNX_FILES)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            manifest = _write_graphs(model, run_dir, tmp)
            marker = {"lewm_version": __version__, "run": str(Path(run_dir).resolve()),
                      "files": sorted(p.name for p in tmp.iterdir())}
            (tmp / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "graphs": sorted(manifest["graphs"]), "manifest": manifest}


def _write_graphs(model, run_dir, tmp: Path) -> dict:
    """The graphs and manifest.json of `model` into the directory `tmp`; the manifest."""
    cfg, card = model.cfg, model.card
    S, D, W = cfg.image_size, cfg.embed_dim, cfg.history
    blk = cfg.frameskip * cfg.action_dim
    n = torch.export.Dim("batch", min=1, max=65536)
    graphs = {}
    _export(EncoderGraph(model), (torch.zeros(2, S, S, 3, dtype=torch.uint8),),
            ["pixels"], ["embeddings"], {"pixels": {0: n}}, tmp / "encoder.onnx")
    graphs["encoder"] = {"file": "encoder.onnx",
                         "inputs": _io(["pixels"], [["batch", S, S, 3]], "uint8"),
                         "outputs": _io(["embeddings"], [["batch", D]], "float32")}
    ctx = (torch.zeros(2, W, D), torch.zeros(2, W, blk))
    axes = {0: n}
    if W > 1:  # fewer tokens than the history while a rollout's window fills
        axes[1] = torch.export.Dim("window", min=1, max=W)
    _export(PredictorGraph(model), ctx, ["embeddings", "actions"], ["next"],
            {"embeddings": axes, "actions": axes}, tmp / "predictor.onnx")
    graphs["predictor"] = {
        "file": "predictor.onnx", "window": W,
        "inputs": _io(["embeddings", "actions"], [["batch", "window", D],
                                                  ["batch", "window", blk]], "float32"),
        "outputs": _io(["next"], [["batch", D]], "float32")}
    actor = _actor(run_dir, card)
    if actor is not None:
        z = tuple(torch.zeros(2, D) for _ in range(3))  # three tensors: one would alias
        _export(actor, z, ["z", "z_prev", "goal"], ["block"],
                {k: {0: n} for k in ("z", "z_prev", "goal")}, tmp / "actor.onnx")
        graphs["actor"] = {"file": "actor.onnx",
                           "inputs": _io(["z", "z_prev", "goal"], [["batch", D]] * 3,
                                         "float32"),
                           "outputs": _io(["block"], [["batch", blk]], "float32")}
    for g in graphs.values():
        g["sha256"] = hashlib.sha256((tmp / g["file"]).read_bytes()).hexdigest()
    manifest = {
        "format": "lewm-onnx", "version": __version__, "opset": OPSET,
        "world": card.world, "image_size": S, "embed_dim": D, "history": W,
        "frameskip": cfg.frameskip, "action_dim": cfg.action_dim,
        "action_z": {"mean": np.asarray(card.action.mean).reshape(-1).tolist(),
                     "std": np.asarray(card.action.std).reshape(-1).tolist(),
                     "note": "env action = z * std + mean, per action dimension, for each "
                             "of a block's frameskip actions"},
        "checkpoint": {"run": str(Path(run_dir).resolve()), "step": card.step,
                       "model_sha256": (card.meta or {}).get("model_sha256")},
        "graphs": graphs,
    }
    write_json(tmp / "manifest.json", manifest)
    return manifest


def _actor(run_dir, card):
    from lewm.actor.net import actor_dir, load_actor

    if not (actor_dir(run_dir) / "actor.json").exists():
        return None
    net, _ = load_actor(run_dir, (card.meta or {}).get("model_sha256"))
    return net.eval()


class OnnxModel:
    """The exported graphs run by onnxruntime: encode, predict one step, roll out, act."""

    def __init__(self, directory, threads: int = 0):
        require_onnx()
        import onnxruntime as ort

        self.dir = Path(directory)
        try:
            self.manifest = json.loads((self.dir / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise LewmError(f"{self.dir}: not an ONNX export ({e})") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.sessions = {name: ort.InferenceSession(str(self.dir / g["file"]), opts,
                                                    providers=["CPUExecutionProvider"])
                         for name, g in self.manifest["graphs"].items()}

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        return self.sessions["encoder"].run(None, {"pixels": np.ascontiguousarray(pixels)})[0]

    def predict(self, embeddings: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.sessions["predictor"].run(None, {
            "embeddings": embeddings.astype(np.float32), "actions": actions.astype(np.float32)})[0]

    def rollout(self, context: np.ndarray, context_actions: np.ndarray | None,
                future: np.ndarray) -> np.ndarray:
        """As `LeWM.rollout`: (B, H, D), (B, H - 1, blk) or None, (B, K, blk) -> (B, K, D)."""
        W = self.manifest["history"]
        acts = future if context_actions is None else np.concatenate([context_actions, future], 1)
        embs, out = context, []
        for k in range(future.shape[1]):
            n = context.shape[1] + k
            nxt = self.predict(embs[:, max(0, n - W) : n], acts[:, max(0, n - W) : n])
            out.append(nxt)
            embs = np.concatenate([embs, nxt[:, None]], 1)
        return np.stack(out, 1)

    def act(self, z, z_prev, goal) -> np.ndarray:
        return self.sessions["actor"].run(None, {"z": z, "z_prev": z_prev, "goal": goal})[0]


@torch.no_grad()
def verify(directory, run_dir, batch: int = 4, blocks: int = 5, seed: int = 0) -> dict:
    """The largest absolute difference between onnxruntime and torch on random frames:
    embeddings, one prediction, a `blocks`-block rollout and (if exported) the actor."""
    from lewm.checkpoint import load_model

    model = load_model(run_dir, device="cpu").eval()
    onnx = OnnxModel(directory)
    g = torch.Generator().manual_seed(seed)
    S, W = model.cfg.image_size, model.cfg.history
    blk = model.cfg.frameskip * model.cfg.action_dim
    pixels = torch.randint(0, 256, (batch, W, S, S, 3), generator=g, dtype=torch.uint8)
    emb = model.encode(pixels)  # (B, W, D)
    out = {"embeddings": _diff(onnx.encode(pixels.flatten(0, 1).numpy()),
                               emb.flatten(0, 1))}
    acts = torch.randn(batch, W + blocks - 1, blk, generator=g)
    pred = model.predict(emb, model.embed_actions(acts[:, :W]))[:, -1]
    out["prediction"] = _diff(onnx.predict(emb.numpy(), acts[:, :W].numpy()), pred)
    ctx_acts = acts[:, : W - 1] if W > 1 else None
    rolled = model.rollout(emb, ctx_acts, acts[:, W - 1 :])
    out["rollout"] = _diff(onnx.rollout(emb.numpy(), None if ctx_acts is None else
                                        ctx_acts.numpy(), acts[:, W - 1 :].numpy()), rolled)
    if "actor" in onnx.sessions:
        net = _actor(run_dir, model.card)
        z = emb[:, -1]
        goal = torch.randn(z.shape, generator=g)
        z_prev = emb[:, -2] if W > 1 else torch.randn(z.shape, generator=g)
        out["actor"] = _diff(onnx.act(z.numpy(), z_prev.numpy(), goal.numpy()),
                             net(z, z_prev, goal))
    return out


def _diff(a: np.ndarray, b: torch.Tensor) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b.double().numpy()).max())
