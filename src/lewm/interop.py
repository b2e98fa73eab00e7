"""The authors' checkpoints in and out: `lewm import` and `lewm export`.

The authors publish a model as a directory with `weights.pt` (a plain state dict, 303
tensors for the paper model) and `config.json` (the Hydra node that builds it: `_target_`
keys, a `predictor`, an `action_encoder` whose `input_dim` is frameskip x action_dim, two
BatchNorm MLPs, and an encoder node that is either stable-pretraining's `vit_hf` (`size`,
`patch_size`, `image_size`) or a transformers `ViTModel` with a `ViTConfig`). Importing
needs neither transformers nor Hydra: the config is read as JSON and the weights with
`torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch

from lewm import __version__
from lewm.checkpoint import load_model, save_checkpoint
from lewm.errors import LewmError
from lewm.io import refuse_overlap, write_json
from lewm.locks import exclusive, lock_file
from lewm.model import LeWM, ModelConfig
from lewm.model.authors import LAYOUTS, detect_layout, from_authors, to_authors
from lewm.validate import check_model_fits

# stable-pretraining's vit_hf sizes: (hidden, layers, heads); the MLP is 4 x hidden.
VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
             "large": (1024, 24, 16)}
_LIB = "stable_worldmodel.wm.lewm"


def _node(cfg: dict, name: str, src) -> dict:
    node = cfg.get(name)
    if not isinstance(node, dict):
        raise LewmError(f"{src}: config.json has no {name!r} node (is it an authors' LeWM "
                        "config?)")
    return node


def _int(node: dict, key: str, src, default=None) -> int:
    value = node.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LewmError(f"{src}: config.json: {key!r} must be a positive integer, got {value!r}")
    return value


def model_config(cfg: dict, action_dim: int, src) -> ModelConfig:
    """The ModelConfig of an authors' config.json model node, for actions of `action_dim`."""
    enc, pred = _node(cfg, "encoder", src), _node(cfg, "predictor", src)
    act, proj = _node(cfg, "action_encoder", src), _node(cfg, "projector", src)
    if "size" in enc:  # stable_pretraining.backbone.utils.vit_hf
        if enc["size"] not in VIT_SIZES:
            raise LewmError(f"{src}: unknown ViT size {enc['size']!r} (known: "
                            f"{', '.join(VIT_SIZES)})")
        width, depth, heads = VIT_SIZES[enc["size"]]
        vit = {"enc_dim": width, "enc_depth": depth, "enc_heads": heads, "enc_mlp": 4 * width,
               "patch_size": _int(enc, "patch_size", src), "image_size": _int(enc, "image_size",
                                                                               src)}
    elif isinstance(enc.get("config"), dict):  # transformers.ViTModel(config=ViTConfig(...))
        c = enc["config"]
        vit = {"enc_dim": _int(c, "hidden_size", src, 768),
               "enc_depth": _int(c, "num_hidden_layers", src, 12),
               "enc_heads": _int(c, "num_attention_heads", src, 12),
               "enc_mlp": _int(c, "intermediate_size", src, 3072),
               "patch_size": _int(c, "patch_size", src, 16),
               "image_size": _int(c, "image_size", src, 224)}
    else:
        raise LewmError(f"{src}: config.json encoder node is neither vit_hf (size, patch_size, "
                        "image_size) nor a transformers ViTModel with a config")
    embed = _int(pred, "input_dim", src)
    for key in ("hidden_dim", "output_dim"):
        if pred.get(key, embed) != embed:
            raise LewmError(f"{src}: predictor {key} {pred[key]} differs from input_dim {embed}: "
                            "lewm's predictor works at the embedding width")
    if float(pred.get("emb_dropout", 0.0)) != 0.0:
        raise LewmError(f"{src}: predictor emb_dropout {pred['emb_dropout']} is not supported")
    block = _int(act, "input_dim", src)
    if block % action_dim:
        raise LewmError(f"{src}: action_encoder.input_dim {block} is not a multiple of the "
                        f"data's {action_dim}-D actions")
    if proj.get("input_dim", vit["enc_dim"]) != vit["enc_dim"]:
        raise LewmError(f"{src}: projector input_dim {proj['input_dim']} is not the encoder "
                        f"width {vit['enc_dim']}")
    return ModelConfig(
        encoder="vit", **vit, embed_dim=embed, proj_hidden=_int(proj, "hidden_dim", src),
        action_dim=action_dim, frameskip=block // action_dim,
        act_channels=_int(act, "smoothed_dim", src, 10),
        act_hidden=_int(act, "mlp_scale", src, 4) * _int(act, "emb_dim", src),
        history=_int(pred, "num_frames", src), pred_depth=_int(pred, "depth", src),
        pred_heads=_int(pred, "heads", src), pred_head_dim=_int(pred, "dim_head", src, 64),
        pred_mlp=_int(pred, "mlp_dim", src), dropout=float(pred.get("dropout", 0.0)),
        pred_pos_init="normal",
    )


def authors_config(m: ModelConfig) -> dict:
    """The Hydra model node the authors' loader instantiates (`load_pretrained`), with a
    transformers ViTModel encoder so that only transformers is needed to build it."""
    if m.encoder != "vit":
        raise LewmError(f"only ViT models have an authors' counterpart; this one has a "
                        f"{m.encoder!r} encoder")
    mlp = lambda d_in: {"_target_": f"{_LIB}.module.MLP", "input_dim": d_in,
                        "hidden_dim": m.proj_hidden, "output_dim": m.embed_dim,
                        "norm_fn": {"_target_": "torch.nn.BatchNorm1d", "_partial_": True}}
    if m.act_hidden % m.embed_dim:
        raise LewmError(f"action encoder hidden size {m.act_hidden} is not a multiple of "
                        f"embed_dim {m.embed_dim} (the authors' mlp_scale)")
    return {
        "_target_": f"{_LIB}.LeWM",
        "encoder": {
            "_target_": "transformers.ViTModel", "add_pooling_layer": False,
            "config": {"_target_": "transformers.ViTConfig", "hidden_size": m.enc_dim,
                       "num_hidden_layers": m.enc_depth, "num_attention_heads": m.enc_heads,
                       "intermediate_size": m.enc_mlp, "image_size": m.image_size,
                       "patch_size": m.patch_size},
        },
        "predictor": {"_target_": f"{_LIB}.module.Predictor", "num_frames": m.history,
                      "input_dim": m.embed_dim, "hidden_dim": m.embed_dim,
                      "output_dim": m.embed_dim, "depth": m.pred_depth, "heads": m.pred_heads,
                      "mlp_dim": m.pred_mlp, "dim_head": m.pred_head_dim, "dropout": m.dropout,
                      "emb_dropout": 0.0},
        "action_encoder": {"_target_": f"{_LIB}.module.Embedder",
                           "input_dim": m.frameskip * m.action_dim,
                           "smoothed_dim": m.act_channels, "emb_dim": m.embed_dim,
                           "mlp_scale": m.act_hidden // m.embed_dim},
        "projector": mlp(m.enc_dim),
        "pred_proj": mlp(m.embed_dim),
    }


def read_authors(src) -> tuple[dict, dict, Path]:
    """(config node, state dict, weights file) of an authors' checkpoint directory or file."""
    src = Path(src)
    if not src.exists():
        raise LewmError(f"{src}: no such file or directory")
    if src.is_file() and src.name.endswith("_object.ckpt") or (
            src.is_dir() and not list(src.glob("*.pt")) and list(src.glob("*_object.ckpt"))):
        raise LewmError(f"{src}: a pickled module (*_object.ckpt) runs code when loaded and is "
                        "not read; export its weights instead: torch.save(model.state_dict(), "
                        "'weights.pt') beside the run's config.json")
    if src.is_dir():
        pts = sorted(src.glob("*.pt"))
        if len(pts) != 1:
            raise LewmError(f"{src}: expected one .pt weights file (found {len(pts)})")
        weights, folder = pts[0], src
    else:
        weights, folder = src, src.parent
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise LewmError(f"{cfg_file}: missing (the authors' model config belongs beside "
                        f"{weights.name})")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LewmError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise LewmError(f"{cfg_file}: expected a JSON object, got {type(cfg).__name__}")
    if isinstance(cfg.get("model"), dict) and "predictor" not in cfg:
        cfg = cfg["model"]  # a whole training config: its model node
    check_zip(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refusals and corrupt files raise many types
        raise LewmError(f"{weights}: not a plain state dict of tensors ({str(e).splitlines()[0]})"
                        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise LewmError(f"{weights}: not a state dict of tensors")
    state = {k.removeprefix("model."): v for k, v in state.items()}
    bad = next((k for k, v in state.items() if v.is_floating_point()
                and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise LewmError(f"{weights}: tensor {bad} holds NaN or inf")
    return cfg, state, weights


def check_zip(weights: Path) -> None:
    """torch.save's zip archive, every record checked against its CRC: torch reads records
    without checking them, so bytes overwritten in place would load as other weights."""
    import zipfile

    if not zipfile.is_zipfile(weights):
        return  # torch's legacy format: no checksums to check
    try:
        with zipfile.ZipFile(weights) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise LewmError(f"{weights}: damaged ({e})") from None
    if bad is not None:
        raise LewmError(f"{weights}: damaged (record {bad} fails its CRC check)")


def import_checkpoint(src, out, data_path, world: str | None = None,
                      force: bool = False) -> dict:
    """Make a lewm run directory from an authors' checkpoint; the action statistics (which
    the authors fit on their dataset at evaluation time) are fitted on `data_path`."""
    from lewm.data.clips import EpisodeData, fit_stats
    from lewm.rundir import replaceable_outputs
    from lewm.trainconfig import TrainConfig, to_dict

    out = Path(out)
    src_dir = Path(src) if Path(src).is_dir() else Path(src).parent
    refuse_overlap(out, [src_dir, data_path], holding=False)  # other files of a run are kept
    cfg, state, weights = read_authors(src)
    data = EpisodeData(data_path, in_memory=False)
    try:
        data_world = str(data.attrs.get("world", ""))
        if world and data_world and world != data_world:
            raise LewmError(f"--world {world}: {data_path} holds {data_world} episodes")
        world = world or data_world
        if not world:
            raise LewmError(f"{data_path}: does not say which world it comes from; pass --world")
        mcfg = model_config(cfg, data.action_dim, src)
        if data.image_size[0] != mcfg.image_size:
            raise LewmError(f"{src}: its model reads {mcfg.image_size} px images, "
                            f"{data_path} holds {data.image_size[0]} px frames")
        train_cfg = TrainConfig(model=mcfg, world=world)
        stats = fit_stats(data, range(data.num_episodes))
        info = {"path": str(Path(data_path).resolve()), "episodes": data.num_episodes,
                "image_size": data.image_size[0], "action_dim": data.action_dim, "world": world,
                "val_episodes": [], "train_clips": 0, "val_clips": 0}
    finally:
        data.close()
    layout = detect_layout(state)
    check_model_fits(mcfg, False, f"{src}: its model ({mcfg.rough_parameters():,} parameters)")
    model = LeWM(mcfg)
    try:
        missing, unexpected = model.load_state_dict(from_authors(state), strict=False)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise LewmError(f"{weights}: weights do not match config.json: {detail}") from None
    if missing or unexpected:
        raise LewmError(f"{weights}: weights do not match config.json (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    source = {"path": str(Path(src).resolve()), "transformers_layout": layout,
              "tensors": len(state)}
    meta = {"lewm_version": __version__, "train": to_dict(train_cfg), "data": info,
            "imported_from": source, "parameters": sum(p.numel() for p in model.parameters()),
            "step": 0}
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(out, "imported into"):
            # An earlier run's results go first (results never outlive their model), then
            # its checkpoint is swapped for the new one in one rename: a crash leaves the old
            # model or the new, each loadable. A file lewm did not write is refused, a
            # user's other files are kept.
            model_files = {"checkpoint", "checkpoint.old", "checkpoint.tmp", "config.json"}
            for path in replaceable_outputs(out, force):
                if path.name not in model_files:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            save_checkpoint(out / "checkpoint", model, meta, stats)
            write_json(out / "config.json", meta)
    except LewmError:
        if fresh and out.is_dir() and {p.name for p in out.iterdir()} <= {lock_file(out).name}:
            shutil.rmtree(out)
        raise
    return {"run_dir": str(out), "config": mcfg, "layout": layout, "tensors": len(state),
            "world": world}


def export_checkpoint(run_dir, out, layout: str = "4", force: bool = False) -> dict:
    """Write a lewm run's model in the authors' layout: `weights.pt` + `config.json`."""
    if layout not in LAYOUTS:
        raise LewmError(f"--transformers must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    model = load_model(run_dir)
    node = authors_config(model.cfg)
    state = to_authors(model.state_dict(), layout)
    out = Path(out)
    refuse_overlap(out, [run_dir])
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "exported", beside=True):
        restore_swapped(out)
        check_export_dir(out, force)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            torch.save(state, tmp / "weights.pt")
            (tmp / "config.json").write_text(json.dumps(node, indent=2) + "\n")
            marker = {"lewm_version": __version__, "run": str(Path(run_dir).resolve()),
                      "files": EXPORT_FILES}
            (tmp / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "tensors": len(state), "layout": layout,
            "config": dataclasses.asdict(model.cfg)}


EXPORT_FILES = ["weights.pt", "config.json"]
EXPORT_MARKER = ".lewm-export.json"
"""written beside an export's files: what tells `--force` that the directory is lewm's"""


def check_export_dir(out: Path, force: bool, files=None) -> None:
    """An export goes to a new or empty directory, or with `force` replaces an earlier
    export (its marker names the files lewm wrote; `files`: those an export of this kind
    may hold, default the authors' layout's); anything else there is refused."""
    if out.exists() and not out.is_dir():
        raise LewmError(f"{out}: is a file, not a directory")
    present = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if not present:
        return
    if not force:
        raise LewmError(f"{out}: already exists (pass --force to replace an earlier export)")
    ours = set(EXPORT_FILES if files is None else files) | {EXPORT_MARKER}
    foreign = [name for name in present if name not in ours]
    if foreign or EXPORT_MARKER not in present:
        name = foreign[0] if foreign else present[0]
        raise LewmError(f"{out / name}: not written by lewm export; refusing to replace it "
                        "(choose another --out)")


def swap_in(new: Path, out: Path) -> None:
    """Put directory `new` at `out` in one rename, the old `out` (if any) moved aside first
    and removed after: a crash between leaves the old one at `.NAME.old`, which the next
    call restores (`restore_swapped`), never a mix of the two."""
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def restore_swapped(out: Path) -> None:
    """Undo a swap cut between its renames: the old directory back at `out`."""
    old = out.with_name(f".{out.name}.old")
    if old.exists() and not out.exists():
        old.rename(out)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)
