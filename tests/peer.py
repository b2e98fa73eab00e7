"""The authors' LeWM from `stable-worldmodel` (the peer library), for the parity tests.

The package's `__init__` imports torchvision, which fails against a CPU torch; its LeWM
modules need only torch and einops. So the wheel is installed with `--no-deps`
(`pip install -e '.[parity]'`) and the modules are loaded here by path, registered under
their own names so that Hydra `_target_` strings resolve to them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

MISSING = "the authors' library is not installed (pip install -e '.[parity]')"


def _root() -> Path | None:
    if "stable_worldmodel" in sys.modules:  # registered by an earlier load
        return Path(sys.modules["stable_worldmodel"].__path__[0])
    spec = importlib.util.find_spec("stable_worldmodel")  # does not run its __init__
    return Path(spec.submodule_search_locations[0]) if spec else None


def _package(name: str, path: Path) -> types.ModuleType:
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path)]
        sys.modules[name] = pkg
    return sys.modules[name]


def _module(name: str, path: Path) -> types.ModuleType:
    if name not in sys.modules:
        # A package's __init__ gets its folder as search path, for its relative imports.
        where = [str(path.parent)] if path.name == "__init__.py" else None
        spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=where)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _require(*deps: str, extras: str = "parity") -> Path:
    """The peer's install folder, or a pytest skip naming what is missing: the peer itself or
    one of `deps`."""
    root = _root()
    if root is None:
        pytest.skip(MISSING)
    for dep in deps:
        if importlib.util.find_spec(dep) is None:
            pytest.skip(f"{dep} is not installed (pip install -e '.[{extras}]')")
    return root


def load():
    """The peer's modules (`lewm`, `module`, `loss`), or a pytest skip when absent."""
    root = _require("einops", "transformers")
    _package("stable_worldmodel", root)
    _package("stable_worldmodel.wm", root / "wm")
    lewm_pkg = _package("stable_worldmodel.wm.lewm", root / "wm" / "lewm")
    module = _module("stable_worldmodel.wm.lewm.module", root / "wm" / "lewm" / "module.py")
    model = _module("stable_worldmodel.wm.lewm.lewm", root / "wm" / "lewm" / "lewm.py")
    loss = _module("stable_worldmodel.wm.loss", root / "wm" / "loss.py")
    lewm_pkg.LeWM, lewm_pkg.module, lewm_pkg.lewm = model.LeWM, module, model
    sys.modules["stable_worldmodel"].wm = sys.modules["stable_worldmodel.wm"]
    sys.modules["stable_worldmodel.wm"].lewm = lewm_pkg
    return types.SimpleNamespace(LeWM=model.LeWM, module=module, SIGReg=loss.SIGReg, root=root)


# The model node of the released checkpoints' config.json (quentinll/lewm-*), as the
# authors' training writes it: stable-pretraining's vit_hf encoder, swm's modules.
RELEASED_CONFIG = {
    "_target_": "stable_worldmodel.wm.lewm.LeWM",
    "encoder": {"_target_": "stable_pretraining.backbone.utils.vit_hf", "size": "tiny",
                "patch_size": 14, "image_size": 224, "pretrained": False,
                "use_mask_token": False},
    "predictor": {"_target_": "stable_worldmodel.wm.lewm.module.Predictor", "num_frames": 3,
                  "input_dim": 192, "hidden_dim": 192, "output_dim": 192, "depth": 6,
                  "heads": 16, "mlp_dim": 2048, "dim_head": 64, "dropout": 0.1,
                  "emb_dropout": 0.0},
    "action_encoder": {"_target_": "stable_worldmodel.wm.lewm.module.Embedder",
                       "input_dim": 10, "emb_dim": 192},
    "projector": {"_target_": "stable_worldmodel.wm.lewm.module.MLP", "input_dim": 192,
                  "output_dim": 192, "hidden_dim": 2048,
                  "norm_fn": {"_target_": "torch.nn.BatchNorm1d", "_partial_": True}},
    "pred_proj": {"_target_": "stable_worldmodel.wm.lewm.module.MLP", "input_dim": 192,
                  "output_dim": 192, "hidden_dim": 2048,
                  "norm_fn": {"_target_": "torch.nn.BatchNorm1d", "_partial_": True}},
}


def cem_solver():
    """The authors' `CEMSolver` class (stable_worldmodel/solver/cem.py), loaded by path, for
    the side-by-side planning benchmark."""
    root = _require("loguru", "gymnasium", extras="parity,worlds")
    _package("stable_worldmodel", root)
    _module("stable_worldmodel.protocols", root / "protocols.py")
    _package("stable_worldmodel.solver", root / "solver")
    _module("stable_worldmodel.solver.callbacks", root / "solver" / "callbacks" / "__init__.py")
    _module("stable_worldmodel.solver.solver", root / "solver" / "solver.py")
    _module("stable_worldmodel.solver.utils", root / "solver" / "utils.py")
    return _module("stable_worldmodel.solver.cem", root / "solver" / "cem.py").CEMSolver


def version() -> str:
    from importlib.metadata import version as v

    return v("stable-worldmodel")


def build(peer, action_dim: int = 2, frameskip: int = 5, history: int = 3):
    """The authors' paper model (docs/design.md §1.2) with their modules and a HF ViT-Tiny/14."""
    from torch import nn
    from transformers import ViTConfig, ViTModel

    vit = ViTModel(ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                             intermediate_size=768, image_size=224, patch_size=14),
                   add_pooling_layer=False)
    m = peer.module
    return peer.LeWM(
        encoder=vit,
        predictor=m.Predictor(num_frames=history, depth=6, heads=16, mlp_dim=2048, input_dim=192,
                              hidden_dim=192, output_dim=192, dim_head=64, dropout=0.1,
                              emb_dropout=0.0),
        action_encoder=m.Embedder(input_dim=frameskip * action_dim, smoothed_dim=10, emb_dim=192,
                                  mlp_scale=4),
        projector=m.MLP(192, 2048, 192, norm_fn=nn.BatchNorm1d),
        pred_proj=m.MLP(192, 2048, 192, norm_fn=nn.BatchNorm1d),
    )


def randomize(model, seed: int = 0) -> None:
    """Every parameter and BatchNorm statistic random (AdaLN-zero starts at exactly zero,
    which would hide a wrong predictor mapping)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


def compare(lib, peer, ours, seed: int = 0, device="cpu") -> dict:
    """Max abs difference of every output the authors' model `peer` (built from `lib`, see
    `load`) and lewm's `ours` share, on the same
    random inputs: {name: float}. Both models in eval mode with the same weights, on
    `device`; SIGReg is compared on the CPU, where both sides draw the same directions."""
    import torch

    from lewm.losses import sigreg
    from lewm.planning.cost import latent_cost

    g = torch.Generator().manual_seed(seed)
    B, T, blk, K = 2, 4, ours.cfg.frameskip * ours.cfg.action_dim, 5
    pixels = torch.randint(0, 256, (B, T, 224, 224, 3), generator=g, dtype=torch.uint8)
    # The authors' transform, written out: scale to [0, 1], ImageNet mean and std, (C, H, W).
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    x = (pixels.permute(0, 1, 4, 2, 3).float() / 255 - mean) / std  # (B, T, 3, 224, 224)
    actions = torch.randn(B, T + K, blk, generator=g)
    pixels, x, actions = pixels.to(device), x.to(device), actions.to(device)
    diff = lambda a, b: (a - b).abs().max().item()
    out = {}
    with torch.no_grad():
        emb_p = peer.encode({"pixels": x})["emb"]  # (B, T, D)
        emb_o = ours.encode(pixels)
        out["embedding (projector output)"] = diff(emb_p, emb_o)
        h = ours.cfg.history
        pred_p = peer.predict(emb_p[:, :h], peer.action_encoder(actions[:, :h]))
        pred_o = ours.predict(emb_o[:, :h], ours.embed_actions(actions[:, :h]))
        out["teacher-forced prediction, 3-frame history"] = diff(pred_p, pred_o)
        # 5-block rollout from 3 context frames: the authors' sequence holds the 3 context
        # blocks and 4 more; lewm's takes the 2 blocks between context frames, then 5.
        info = {"pixels": x[:, None, :h]}  # (B, S=1, h, 3, 224, 224)
        roll_p = peer.rollout(info, actions[:, None, : h + K - 1])["predicted_emb"][:, 0, h:]
        roll_o = ours.rollout(emb_o[:, :h], actions[:, : h - 1], actions[:, h - 1 : h + K - 1])
        out["5-block rollout, 3-frame context"] = diff(roll_p, roll_o)
        # CEM cost of a batch of candidates, as the authors plan: the current frame only.
        S = 64
        cand = torch.randn(1, S, K, blk, generator=g).to(device)
        infos = {"pixels": x[:1, None, :1].expand(1, S, 1, 3, 224, 224),
                 "goal": x[:1, None, 3:4].expand(1, S, 1, 3, 224, 224),
                 "action": actions[:1, None, :1].expand(1, S, 1, blk)}
        cost_p = peer.get_cost(infos, cand)  # (1, S)
        cost_o = latent_cost(ours, emb_o[:1, :1], None, emb_o[:1, 3])(cand)
        out["CEM cost of 64 candidates (horizon 5)"] = diff(cost_p, cost_o)
        z = emb_o.cpu().transpose(0, 1).contiguous()  # (T, B, D)
        z = torch.cat([z, torch.randn(T, 254, z.shape[-1], generator=g)], 1)  # a real batch
        torch.manual_seed(seed)  # the authors draw directions from the global generator
        sig_p = lib.SIGReg(knots=17, num_proj=1024)(z)
        sig_o = sigreg(z, 1024, torch.Generator().manual_seed(seed))
        out["SIGReg (1024 directions, 17 knots)"] = diff(sig_p, sig_o)
    return out



def hdf5_writer():
    """The authors' `HDF5Writer` (stable_worldmodel/data/formats/hdf5.py), loaded by path with
    its package's cache-directory helper stubbed out."""
    root = _require()
    pytest.importorskip("hdf5plugin", reason="hdf5plugin is not installed (lewm[authors])")
    data = root / "data"
    _package("stable_worldmodel", root)
    _package("stable_worldmodel.data", data)
    _package("stable_worldmodel.data.formats", data / "formats")
    _module("stable_worldmodel.data.dataset", data / "dataset.py")
    _module("stable_worldmodel.data.format", data / "format.py")
    if "stable_worldmodel.data.utils" not in sys.modules:
        utils = types.ModuleType("stable_worldmodel.data.utils")
        utils.get_cache_dir = lambda *a, **k: Path(".")
        sys.modules["stable_worldmodel.data.utils"] = utils
    return _module("stable_worldmodel.data.formats.hdf5", data / "formats" / "hdf5.py").HDF5Writer
