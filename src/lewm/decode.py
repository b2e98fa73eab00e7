"""See what the model imagines: a pixel decoder for frozen embeddings.

A small convolutional decoder is trained to map the post-projector embedding (D) of a frame
back to the frame, on the run's training episodes, with the world model frozen; it is
scored on the held-out (validation) episodes. The world model never learns from pixels
reconstruction (LeWM has no decoder, paper §3), so this is a read-out of what the latent
keeps, like a probe, and a window on the predictor: decoded open-loop rollouts show where
its predictions drift.

Outputs in the run directory: `decoder.safetensors` + `decoder.json` (its config, the
SHA-256 of the world model it decodes), `decode.json` (held-out MSE, PSNR and, where the
world draws its agent in one colour, the decoded agent position's error), `decode.png`
(held-out frames over their reconstructions) and `decode_rollout.gif` (a held-out episode:
real frames, their reconstructions, and the decoded open-loop predictions).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lewm import __version__
from lewm.checkpoint import find_checkpoint, read_meta
from lewm.data.clips import EpisodeData, held_out_split
from lewm.data.hdf5 import check_world
from lewm.errors import LewmError
from lewm.io import atomic_path, write_gif, write_json
from lewm.model.embed import embed_frames
from lewm.rundir import load_run_model, writing
from lewm.studyconfig import DecodeConfig


class Decoder(nn.Module):
    """Embedding (N, D) -> image (N, 3, S, S) in [0, 1]: a linear map to a coarse grid, then
    (x2 nearest upsampling -> 3x3 conv -> GroupNorm -> GELU) per stage, a 3x3 conv to RGB."""

    def __init__(self, embed_dim: int, image_size: int, channels=(64, 32, 16, 8)):
        super().__init__()
        self.image_size = image_size
        self.base = math.ceil(image_size / 2 ** len(channels))  # coarse grid side
        self.channels = tuple(channels)
        self.inp = nn.Linear(embed_dim, channels[0] * self.base**2)
        stages = []
        for c_in, c_out in zip(channels, channels[1:] + channels[-1:]):
            stages += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(8, c_out), c_out),
                       nn.GELU()]
        self.stages = nn.Sequential(*stages)
        self.out = nn.Conv2d(channels[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.inp(z).view(len(z), self.channels[0], self.base, self.base)
        x = self.out(self.stages(x))  # (N, 3, base * 2^k, base * 2^k)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear",
                              align_corners=False)
        return torch.sigmoid(x)


# Worlds whose agent is drawn in one colour: its position is the centroid of that colour's
# mass, in canvas units, compared with the agent position in the `state` column.
#   world -> (canvas side, colour mass of an (N, H, W, 3) float image in [0, 1])
AGENT_MARKER = {
    "tworoom": (224.0, lambda im: (im[..., 0] - im[..., 1]).clamp_min(0)),  # red
    "pusht": (512.0, lambda im: (im[..., 2] - im[..., 0]).clamp_min(0)),  # royal blue
}


def agent_centroid(images: torch.Tensor, world: str) -> torch.Tensor:
    """(N, H, W, 3) images in [0, 1] -> (N, 2) agent (x, y) in canvas units. The mass below
    half of each image's peak is ignored, so a faint haze elsewhere does not pull it."""
    canvas, mass_of = AGENT_MARKER[world]
    m = mass_of(images)  # (N, H, W)
    m = torch.where(m >= 0.5 * m.amax((1, 2), keepdim=True), m, torch.zeros_like(m))
    S = images.shape[1]
    coords = (torch.arange(S, dtype=m.dtype) + 0.5) * canvas / S
    total = m.sum((1, 2)).clamp_min(1e-8)
    x = (m.sum(1) * coords).sum(1) / total
    y = (m.sum(2) * coords).sum(1) / total
    return torch.stack([x, y], 1)


def model_digest(run_dir) -> str:
    """SHA-256 of a run's model.safetensors: which world model a decoder belongs to. The
    checksum config.json records (and every load verifies), else the file hashed (older
    checkpoints)."""
    recorded = read_meta(run_dir).get("model_sha256")
    if recorded is not None:
        return recorded
    return hashlib.sha256((find_checkpoint(run_dir) / "model.safetensors").read_bytes()).hexdigest()


def load_decoder(run_dir, device="cpu") -> Decoder | None:
    """The run's decoder, or None when it has none; refused in one line when it was trained
    for another world model (another run, or this run before more training)."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    meta_path, weights = run_dir / "decoder.json", run_dir / "decoder.safetensors"
    if not meta_path.exists() and not weights.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        dec = Decoder(meta["embed_dim"], meta["image_size"], tuple(meta["channels"]))
        dec.load_state_dict(load_file(weights))
    except FileNotFoundError as e:
        raise LewmError(f"{run_dir}: incomplete decoder ({Path(e.filename).name} is missing; "
                        "rerun `lewm decode --force`)") from None
    except Exception as e:  # noqa: BLE001  (json, safetensors and torch raise many types)
        raise LewmError(f"{run_dir}: cannot read its decoder ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:120]}); rerun `lewm decode "
                        "--force`") from None
    if not all(bool(torch.isfinite(p).all()) for p in dec.parameters()):
        raise LewmError(f"{weights}: holds NaN or inf; rerun `lewm decode --force`")
    if meta.get("model_sha256") != model_digest(run_dir):
        raise LewmError(f"{meta_path}: this decoder was trained for another world model (not "
                        f"this run's checkpoint); rerun `lewm decode {run_dir} --force`")
    return dec.to(device).eval()


def to_images(dec: Decoder, size: int):
    """The decoder as a function embeddings (n, D) -> images (n, size, size, 3) uint8."""

    @torch.no_grad()
    def pixels(z: torch.Tensor) -> np.ndarray:
        img = dec(z.float().to(next(dec.parameters()).device)).cpu()
        if img.shape[-1] != size:
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
        return (img.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()

    return pixels


def _to_float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float().div_(255.0)  # (N, H, W, 3)


@torch.no_grad()
def imagine(model, dec: Decoder, data: EpisodeData, episode: int, blocks: int):
    """A held-out episode opened from its first frame with its own actions: (real frames,
    reconstructions of the real frames, decoded open-loop predictions), each (K+1, H, W, 3)
    uint8; the prediction's first frame is the reconstruction of the first real frame."""
    fs = model.cfg.frameskip
    start, length = int(data.ep_offset[episode]), int(data.ep_len[episode])
    K = min(blocks, (length - 1) // fs)
    if K < 1:
        raise LewmError(f"{data.path}: episode {episode} is too short for a rollout")
    rows = start + fs * np.arange(K + 1)
    real = np.asarray(data.pixels[rows[0] : rows[-1] + 1])[::fs]  # (K+1, H, W, 3)
    raw = data.action[start : start + K * fs].reshape(K, fs * data.action_dim)
    acts = torch.from_numpy(model.trained_card.action.blocks(fs).to_z(raw)).float()
    emb = model.encode(torch.from_numpy(real)[None].to(model.device))[0]  # (K+1, D)
    pred = model.rollout(emb[:1][None], None, acts[None].to(model.device))[0]  # (K, D)
    pixels = to_images(dec, real.shape[1])
    recon = pixels(emb)
    return real, recon, np.concatenate([recon[:1], pixels(pred)])


def decode(run_dir, cfg: DecodeConfig, data_path=None, force: bool = False,
           device: str = "auto", progress: bool = True) -> dict:
    """Train and score a decoder for a run; writes the files listed in the module docstring."""
    with writing(run_dir, "decoder.json", "decoded"):
        return _decode(run_dir, cfg, data_path, force, device, progress)


def _decode(run_dir, cfg: DecodeConfig, data_path=None, force: bool = False,
            device: str = "auto", progress: bool = True) -> dict:
    run_dir = Path(run_dir)
    out = run_dir / "decode.json"
    model = load_run_model(run_dir, ("decode.json", "decoder.json", "decoder.safetensors"), force,
                     device)
    dev = model.device
    for p in model.parameters():
        p.requires_grad_(False)
    card = model.card
    world = card.world
    data_path = data_path or card.data["path"]
    data = EpisodeData(data_path, camera=card.data.get("camera"))
    check_world(data_path, data.attrs, model.card.world, model.card.image_size,
                data.image_size[0])
    size = data.image_size[0]
    train_eps, val_eps = held_out_split(card.data, data.num_episodes, cfg.seed)
    if len(train_eps) == 0 or len(val_eps) == 0:
        raise LewmError(f"{data_path}: needs training and held-out episodes for a decoder")

    rng = np.random.default_rng(cfg.seed)
    frame_bytes = size * size * 3
    n_train = max(cfg.batch_size, min(cfg.frames, (1 << 30) // frame_bytes))
    rows = {"train": data.sample_rows(train_eps, n_train, rng),
            "test": data.sample_rows(val_eps, cfg.test_frames, rng)}
    emb = {k: embed_frames(model, data.pixels, r).cpu() for k, r in rows.items()}  # (n, D)
    images = {k: np.asarray(data.pixels[r]) for k, r in rows.items()}  # (n, H, W, 3) uint8

    torch.manual_seed(cfg.seed)
    dec = Decoder(model.cfg.embed_dim, size, cfg.channels).to(dev)
    opt = torch.optim.AdamW(dec.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="decode", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    for _ in bar:
        idx = torch.randint(len(rows["train"]), (cfg.batch_size,), generator=gen)
        target = _to_float(images["train"][idx.numpy()]).permute(0, 3, 1, 2).to(dev)
        loss = F.mse_loss(dec(emb["train"][idx].to(dev)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(mse=f"{loss.item():.4f}")
    bar.close()
    train_s = time.perf_counter() - t0
    dec.eval()

    with torch.no_grad():
        recon = torch.cat([dec(emb["test"][i : i + 256].to(dev)).cpu()
                           for i in range(0, len(emb["test"]), 256)]).permute(0, 2, 3, 1)
    truth = _to_float(images["test"])
    per_frame = ((recon - truth) ** 2).mean((1, 2, 3))  # (n,)
    mse = float(per_frame.mean())
    result = {
        "world": world,
        "heldout_mse": mse,
        "heldout_psnr_db": 10 * math.log10(1 / mse),
        "heldout_psnr_db_median_frame": float(np.median(10 * np.log10(1 / per_frame.numpy()))),
        "train_frames": len(rows["train"]),
        "test_frames": len(rows["test"]),
        "test_episodes": len(val_eps),
        "train_seconds": train_s,
    }
    if world in AGENT_MARKER and "state" in data.lowdim:
        true_pos = torch.from_numpy(data.lowdim["state"][rows["test"], :2]).float()
        err = (agent_centroid(recon, world) - true_pos).norm(dim=1)
        ref = (agent_centroid(truth, world) - true_pos).norm(dim=1)  # the measure on real frames
        result["agent_position"] = {
            "decoded_error_median": float(err.median()),
            "decoded_within_8_units": float((err <= 8).float().mean()),
            "real_frame_error_median": float(ref.median()),
            "real_within_8_units": float((ref <= 8).float().mean()),
            "units": "canvas units (Two-Room 224, Push-T 512 per side)",
        }

    digest = model_digest(run_dir)
    from safetensors.torch import save_file

    with atomic_path(run_dir / "decoder.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in dec.state_dict().items()},
                  str(tmp))
    dec_meta = {"embed_dim": model.cfg.embed_dim, "image_size": size,
                "channels": list(cfg.channels), "model_sha256": digest,
                "config": asdict(cfg), "version": __version__}
    write_json(run_dir / "decoder.json", dec_meta)

    episode = int(val_eps[0])
    real, rec, imagined = imagine(model, dec.cpu(), data, episode, cfg.rollout_blocks)
    sep = np.full_like(real[:, :, :2], 255)
    frames = [np.concatenate([a, s, b, s, c], 1) for a, b, c, s in zip(real, rec, imagined, sep)]
    write_gif(frames, run_dir / "decode_rollout.gif", fps=4, scale=max(1, 192 // size))
    drift = ((_to_float(imagined) - _to_float(rec)) ** 2).mean((1, 2, 3))
    result["rollout"] = {"episode": episode, "blocks": len(real) - 1,
                         "mse_imagined_vs_reconstructed_per_block": drift.tolist()}
    result.update({"data": str(data_path), "checkpoint_step": card.step,
                   "model_sha256": digest, "config": asdict(cfg), "version": __version__})
    write_json(out, result)
    from lewm.plots import plot_decode

    plot_decode(images["test"][:8], (recon[:8].clamp(0, 1) * 255).round().byte().numpy(),
                run_dir / "decode.png")
    data.close()
    return result
