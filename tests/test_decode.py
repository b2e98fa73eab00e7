"""`lewm decode`: a pixel decoder on frozen embeddings, its outputs and its refusals."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import run_cli

from lewm.decode import AGENT_MARKER, DecodeConfig, Decoder, agent_centroid, decode, load_decoder
from lewm.envs import tworoom
from lewm.errors import LewmError


def test_decoder_output_size_and_range():
    for size in (16, 32, 64, 224, 50):
        dec = Decoder(8, size, (16, 8, 8))
        img = dec(torch.randn(3, 8))
        assert img.shape == (3, 3, size, size) and 0 <= img.min() and img.max() <= 1


def test_agent_centroid_reads_the_true_position():
    """The measure behind the decoded-position figure, on real renders."""
    env = tworoom.TwoRoomEnv(64)
    pos = np.array([[40.0, 60.0], [180.0, 30.0], [112.0, 150.0]], np.float32)
    frames = np.stack([env.render_state(p) for p in pos])
    got = agent_centroid(torch.from_numpy(frames).float() / 255, "tworoom").numpy()
    np.testing.assert_allclose(got, pos, atol=3.0)
    assert set(AGENT_MARKER) >= {"tworoom", "pusht"}


def test_decode_writes_its_outputs_and_refuses_a_foreign_decoder(tiny_run, tmp_path):
    cfg = DecodeConfig(steps=30, batch_size=16, frames=200, test_frames=50, rollout_blocks=4)
    r = decode(tiny_run, cfg, progress=False, device="cpu")
    for name in ("decode.json", "decode.png", "decode_rollout.gif", "decoder.json",
                 "decoder.safetensors"):
        assert (tiny_run / name).exists(), name
    assert r["heldout_psnr_db"] > 0 and 0 < r["test_frames"] <= 50
    assert 0 <= r["agent_position"]["decoded_within_8_units"] <= 1
    assert r["agent_position"]["real_within_8_units"] > 0.9  # the measure itself is sound
    assert len(r["rollout"]["mse_imagined_vs_reconstructed_per_block"]) == 5
    assert r["rollout"]["mse_imagined_vs_reconstructed_per_block"][0] == 0
    again = decode(tiny_run, cfg, progress=False, device="cpu", force=True)
    assert again["heldout_mse"] == r["heldout_mse"]  # seeded
    with pytest.raises(LewmError, match="already exists"):
        decode(tiny_run, cfg, progress=False)
    assert load_decoder(tiny_run) is not None
    # eval's GIFs gain a panel: the decoded end of the plan being executed.
    from PIL import Image

    from lewm.evalrun import eval_run
    from lewm.planning.config import CEMConfig, PlanConfig
    from lewm.protocol import EvalConfig

    eval_run(tiny_run, EvalConfig(episodes=2, gifs=1),
             PlanConfig(solver=CEMConfig(samples=8, elites=2, iterations=1)), out_name="e.json")
    gif = Image.open(tiny_run / "e_episode00.gif")
    size = json.loads((tiny_run / "decoder.json").read_text())["image_size"]
    # observation | decoded plan end | goal, 2-pixel white separators, scaled up
    assert gif.width == (3 * size + 4) * max(1, 192 // size)
    # The surprise figure gains the observed and decoded predicted frames at the event.
    from lewm.surprise import surprise

    surprise(tiny_run, trajectories=4, blocks=4, device="cpu")
    assert (tiny_run / "surprise.png").exists()

    # The same decoder copied beside another model: refused in one line.
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    ckpt = other / "checkpoint"
    meta = json.loads((ckpt / "config.json").read_text())
    from safetensors.torch import load_file, save_file

    state = load_file(ckpt / "model.safetensors")
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, ckpt / "model.safetensors")
    import hashlib

    meta["model_sha256"] = hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(LewmError, match="another world model"):
        load_decoder(other)
    (other / "decoder.json").unlink()
    with pytest.raises(LewmError, match="incomplete decoder"):
        load_decoder(other)


def test_decode_cli_errors(tiny_run, tmp_path):
    r = run_cli("decode", tmp_path, check=False)
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("decode", tiny_run, "--steps", 0, check=False)
    assert r.returncode == 2 and "--steps must be >= 1" in r.stderr
