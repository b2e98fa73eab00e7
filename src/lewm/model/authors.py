"""The authors' parameter names (stable-worldmodel's LeWM), to and from lewm's.

The authors' model is `LeWM(encoder, predictor, action_encoder, projector, pred_proj)` with a
Hugging Face `ViTModel` encoder. Its state dict holds 303 tensors for the paper model; the
encoder's names depend on the transformers version that saved it:

    transformers 4.x                                   transformers 5.x
    encoder.encoder.layer.N.attention.attention.query  encoder.layers.N.attention.q_proj
    encoder.encoder.layer.N.attention.output.dense     encoder.layers.N.attention.o_proj
    encoder.encoder.layer.N.intermediate.dense         encoder.layers.N.mlp.fc1
    encoder.encoder.layer.N.output.dense               encoder.layers.N.mlp.fc2

Both are read; either is written. lewm fuses the ViT's q/k/v into one Linear (same numbers,
one matmul), so those three tensors are concatenated on the way in and split on the way out.
Only torch is needed: nothing here imports transformers.
"""

from __future__ import annotations

import re

import torch

from lewm.errors import LewmError

LAYOUTS = ("4", "5")

# Names that differ only by a fixed rename, lewm -> authors (outside the ViT blocks).
_FIXED = {
    "encoder.patch.weight": "encoder.embeddings.patch_embeddings.projection.weight",
    "encoder.patch.bias": "encoder.embeddings.patch_embeddings.projection.bias",
    "encoder.cls": "encoder.embeddings.cls_token",
    "encoder.pos": "encoder.embeddings.position_embeddings",
    "encoder.norm.weight": "encoder.layernorm.weight",
    "encoder.norm.bias": "encoder.layernorm.bias",
    "action_encoder.conv.weight": "action_encoder.patch_embed.weight",
    "action_encoder.conv.bias": "action_encoder.patch_embed.bias",
    "action_encoder.mlp.0.weight": "action_encoder.embed.0.weight",
    "action_encoder.mlp.0.bias": "action_encoder.embed.0.bias",
    "action_encoder.mlp.2.weight": "action_encoder.embed.2.weight",
    "action_encoder.mlp.2.bias": "action_encoder.embed.2.bias",
    "predictor.pos": "predictor.pos_embedding",
    "predictor.norm.weight": "predictor.transformer.norm.weight",
    "predictor.norm.bias": "predictor.transformer.norm.bias",
}

# Inside ViT block N, lewm suffix -> authors' suffix per layout (q/k/v handled apart).
_VIT_BLOCK = {
    "4": {"norm1": "layernorm_before", "norm2": "layernorm_after",
          "out": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense"},
    "5": {"norm1": "layernorm_before", "norm2": "layernorm_after",
          "out": "attention.o_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
}
_VIT_QKV = {"4": ("attention.attention.query", "attention.attention.key",
                  "attention.attention.value"),
            "5": ("attention.q_proj", "attention.k_proj", "attention.v_proj")}
_VIT_PREFIX = {"4": "encoder.encoder.layer.", "5": "encoder.layers."}

# Inside predictor block N, lewm suffix -> authors' suffix.
_PRED_BLOCK = {
    "attn.norm": "attn.norm", "attn.qkv": "attn.to_qkv", "attn.out": "attn.to_out.0",
    "mlp.net.0": "mlp.net.0", "mlp.net.1": "mlp.net.1", "mlp.net.4": "mlp.net.4",
    "ada.1": "adaLN_modulation.1",
}
# Projector MLPs: lewm's Sequential is the authors' `.net` Sequential.
_MLP = re.compile(r"^(projector|pred_proj)\.(\d+\..+)$")


def detect_layout(state: dict) -> str:
    """'4' or '5': the transformers version whose ViT names an authors' state dict uses."""
    if any(k.startswith(_VIT_PREFIX["5"]) for k in state):
        return "5"
    if any(k.startswith(_VIT_PREFIX["4"]) for k in state):
        return "4"
    raise LewmError("not an authors' LeWM state dict: no ViT encoder blocks "
                    "(encoder.encoder.layer.N or encoder.layers.N)")


def to_authors(state: dict, layout: str = "4") -> dict:
    """lewm state dict of a ViT model -> the authors' names (transformers `layout`)."""
    if layout not in LAYOUTS:
        raise LewmError(f"transformers layout must be one of {LAYOUTS}, got {layout!r}")
    out = {}
    for key, value in state.items():
        out.update(_rename_out(key, value, layout))
    return out


def _rename_out(key: str, value: torch.Tensor, layout: str) -> dict:
    if key in _FIXED:
        return {_FIXED[key]: value}
    if m := _MLP.match(key):
        return {f"{m[1]}.net.{m[2]}": value}
    if m := re.match(r"^encoder\.blocks\.(\d+)\.(\w+)\.(weight|bias)$", key):
        n, part, kind = m.groups()
        prefix = f"{_VIT_PREFIX[layout]}{n}."
        if part == "qkv":
            return {f"{prefix}{name}.{kind}": chunk
                    for name, chunk in zip(_VIT_QKV[layout], value.chunk(3, 0))}
        return {f"{prefix}{_VIT_BLOCK[layout][part]}.{kind}": value}
    if m := re.match(r"^predictor\.blocks\.(\d+)\.(.+)\.(weight|bias)$", key):
        n, part, kind = m.groups()
        return {f"predictor.transformer.layers.{n}.{_PRED_BLOCK[part]}.{kind}": value}
    raise LewmError(f"lewm parameter {key!r} has no counterpart in the authors' model "
                    "(only the ViT encoder is the authors' architecture)")


def from_authors(state: dict) -> dict:
    """The authors' state dict (either transformers layout) -> lewm's names."""
    layout = detect_layout(state)
    reverse = {}  # authors' name -> (lewm name, q/k/v index or None)
    for key in _FIXED:
        reverse[_FIXED[key]] = (key, None)
    prefix = _VIT_PREFIX[layout]
    out, qkv = {}, {}
    for key, value in state.items():
        if key in reverse:
            out[reverse[key][0]] = value
        elif m := re.match(r"^(projector|pred_proj)\.net\.(\d+\..+)$", key):
            out[f"{m[1]}.{m[2]}"] = value
        elif key.startswith(prefix):
            n, rest = key[len(prefix):].split(".", 1)
            suffix, kind = rest.rsplit(".", 1)
            if suffix in _VIT_QKV[layout]:
                qkv.setdefault((n, kind), {})[_VIT_QKV[layout].index(suffix)] = value
                continue
            names = {v: k for k, v in _VIT_BLOCK[layout].items()}
            if suffix not in names:
                raise LewmError(f"authors' parameter {key!r} is not part of LeWM's ViT")
            out[f"encoder.blocks.{n}.{names[suffix]}.{kind}"] = value
        elif m := re.match(r"^predictor\.transformer\.layers\.(\d+)\.(.+)\.(weight|bias)$", key):
            names = {v: k for k, v in _PRED_BLOCK.items()}
            if m[2] not in names:
                raise LewmError(f"authors' parameter {key!r} is not part of LeWM's predictor")
            out[f"predictor.blocks.{m[1]}.{names[m[2]]}.{m[3]}"] = value
        else:
            raise LewmError(f"authors' parameter {key!r} is not part of LeWM")
    for (n, kind), parts in qkv.items():
        if len(parts) != 3:
            raise LewmError(f"authors' ViT block {n}: {kind} of q, k and v incomplete")
        out[f"encoder.blocks.{n}.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]], 0)
    return out
