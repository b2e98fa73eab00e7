"""Probing, surprise and the collapse study, on tiny runs."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_cli, write_episode_file

from lewm.errors import LewmError
from lewm.losses import vicreg_terms
from lewm.probe import pearson, ridge
from lewm.recipes import get_recipe
from lewm.surprise import auroc, paired_t_test
from lewm.train import train
from lewm.trainconfig import override


def test_ridge_recovers_a_linear_map():
    torch.manual_seed(0)
    x = torch.randn(500, 6)
    W = torch.randn(6, 2)
    y = x @ W + 0.5
    W_hat, b_hat = ridge(x, y, alpha=1e-8)
    torch.testing.assert_close(W_hat, W, atol=1e-3, rtol=0)
    torch.testing.assert_close(b_hat, torch.full((2,), 0.5), atol=1e-3, rtol=0)
    assert pearson(np.arange(10.0), 2 * np.arange(10.0) + 1) == pytest.approx(1.0)


def test_statistics():
    # Paired differences with mean 1 and sd 1, n = 11: t = sqrt(11), dof 10, two-sided
    # p = 0.0077917 (the t distribution's tail, as the hand-written incomplete beta that
    # scipy replaced also gave, to 1e-17); and the t table's 5 % point for dof 1, 12.706.
    d = np.array([-1.5, -1, -0.5, 0, 0.5, 1, 1.5, 0, 0, 0, 0])
    d = 1 + (d - d.mean()) / d.std(ddof=1)
    t, p = paired_t_test(d, np.zeros(11))
    assert t == pytest.approx(np.sqrt(11), rel=1e-9) and p == pytest.approx(0.0077917, abs=1e-7)
    x = 1 / 12.706
    assert paired_t_test(np.array([1 + x, 1 - x]), np.zeros(2))[1] == pytest.approx(0.05, abs=1e-5)
    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    t, p = paired_t_test(base + 1.0 + 0.1 * rng.normal(size=40), base)
    assert t > 10 and p < 1e-10
    assert auroc([3, 4, 5], [0, 1, 2]) == 1.0 and auroc([1, 1], [1, 1]) == 0.5


def test_vicreg_terms():
    torch.manual_seed(0)
    var, cov = vicreg_terms(torch.randn(2, 4096, 8))
    assert var < 0.02 and cov < 0.02
    var, cov = vicreg_terms(torch.zeros(2, 64, 8))
    assert var > 0.98
    line = torch.randn(2, 256, 1).expand(2, 256, 8)
    assert vicreg_terms(line)[1] > 5


@pytest.mark.parametrize("reg", ["none", "vicreg", "ema"])
def test_each_regulariser_trains(tworoom_file, tmp_path, reg):
    cfg = override(get_recipe("tiny").train, [f"regularizer={reg}", "steps=6"])
    summary = train(cfg, tworoom_file, tmp_path / reg, progress=False)
    assert summary["finished"] and np.isfinite(summary["val"]["pred_loss"])


def test_ema_resume_is_bitwise_identical(tworoom_file, tmp_path):
    from safetensors.torch import load_file

    cfg = override(get_recipe("tiny").train, ["regularizer=ema", "steps=8"])
    train(cfg, tworoom_file, tmp_path / "a", progress=False)
    assert not train(cfg, tworoom_file, tmp_path / "b", progress=False, stop_after=3)["finished"]
    train(None, None, tmp_path / "b", resume=True, progress=False)
    a = load_file(tmp_path / "a" / "checkpoint" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_probe(tiny_run, tmp_path):
    from lewm.probe import probe

    r = probe(tiny_run, max_rows=200)
    assert set(r["probes"]) == {"linear", "mlp"} and "agent_position" in r["probes"]["linear"]
    assert (tiny_run / "probe.png").exists()
    with pytest.raises(LewmError, match="already exists"):
        probe(tiny_run)
    no_state = write_episode_file(tmp_path / "nostate.h5", [40] * 12, size=32, state=None)
    with pytest.raises(LewmError, match="no 'state' column"):
        probe(tiny_run, data_path=no_state, force=True)


def test_surprise(tiny_run):
    from lewm.surprise import surprise

    r = surprise(tiny_run, trajectories=6, blocks=6)
    assert set(r["variants"]) == {"teleport", "colour"}
    assert len(r["mean_curves"]["unperturbed"]) == 6
    assert (tiny_run / "surprise.png").exists()


def test_cli_probe_surprise_ablate(tiny_run, tworoom_file, tmp_path):
    assert "agent_position" in run_cli("probe", tiny_run, "--rows", 100, "--force").stdout
    assert "teleport" in run_cli("surprise", tiny_run, "--trajectories", 4, "--blocks", 5,
                                 "--force").stdout
    out = tmp_path / "ablate"
    proc = run_cli("ablate", "--preset", "tiny", "--data", tworoom_file, "--out", out,
                   "--regularizers", "sigreg,none", "--episodes", 2, "--set", "steps=4",
                   "--quiet")
    assert "| SIGReg (LeWM) |" in proc.stdout
    result = json.loads((out / "ablation.json").read_text())
    assert [r["regularizer"] for r in result["rows"]] == ["sigreg", "none"]
    assert (out / "ablation.png").exists() and (out / "ablation.md").exists()
    # An interrupted study resumes: finished runs and their evaluations are not redone.
    (out / "ablation.json").unlink()
    again = run_cli("ablate", "--preset", "tiny", "--data", tworoom_file, "--out", out,
                    "--regularizers", "sigreg,none", "--episodes", 2, "--set", "steps=4",
                    "--quiet")
    assert "reusing the finished run" in again.stdout and "evaluating" not in again.stdout
    assert json.loads((out / "ablation.json").read_text())["rows"] == result["rows"]
    # A run stopped part-way through is resumed, not refused or restarted.
    (out / "ablation.json").unlink()
    cfg = override(get_recipe("tiny").train, ["steps=4", "regularizer=vicreg"])
    train(cfg, tworoom_file, out / "vicreg", progress=False, stop_after=2)
    again = run_cli("ablate", "--preset", "tiny", "--data", tworoom_file, "--out", out,
                    "--regularizers", "none,vicreg", "--episodes", 2, "--set", "steps=4",
                    "--quiet")
    assert "[vicreg] resuming the stopped run" in again.stdout
    assert [r["regularizer"] for r in json.loads((out / "ablation.json").read_text())["rows"]] \
        == ["none", "vicreg"]
    bad = run_cli("ablate", "--data", tworoom_file, "--out", tmp_path / "x", "--regularizers",
                  "dropout", check=False)
    assert bad.returncode == 2 and "unknown regularizer 'dropout'" in bad.stderr


class OracleEmbedding:
    """Two-Room's perfect latent: the agent position, read off the image as the centroid of
    the coloured (saturated) pixels, with the true dynamics as its predictor."""

    def __init__(self, card):
        from lewm.model.normalize import ZScore

        raw = ZScore(np.zeros(2, np.float32), np.ones(2, np.float32))  # actions as they are
        self.card = dataclasses.replace(card, stats={**card.stats, "action": raw})
        self.device = torch.device("cpu")
        self.cfg = SimpleNamespace(frameskip=5, action_dim=2, history=3)

    def encode(self, pixels):  # (B, T, H, W, 3) uint8 -> (B, T, 2)
        from lewm.envs import tworoom

        img = pixels.double()
        sat = img.max(-1).values - img.min(-1).values  # the dot, red or recoloured
        S = pixels.shape[-2]
        coords = torch.arange(S, dtype=torch.float64) * tworoom.CANVAS / S
        mass = sat.sum((-1, -2))
        return torch.stack([(sat.sum(-2) * coords).sum(-1) / mass,
                            (sat.sum(-1) * coords).sum(-1) / mass], -1).float()

    def embed_actions(self, a):
        return a

    def predict(self, emb, act):  # the last output: the true next position
        from lewm.envs import tworoom

        pos = emb[:, -1].double().numpy()
        for step in act[:, -1].view(len(pos), 5, 2).double().numpy().transpose(1, 0, 2):
            pos = tworoom.move(pos, step)
        return torch.from_numpy(pos).float()[:, None]


def test_probe_and_surprise_on_an_oracle(tiny_run, monkeypatch):
    """The analyses give the right answer when the answer is known: a probe of the true
    position has r > 0.99, and teleporting the agent surprises a perfect model (p < 0.01)."""
    import lewm.probe
    import lewm.surprise
    from lewm.checkpoint import load_model

    oracle = OracleEmbedding(load_model(tiny_run).card)
    for module in (lewm.probe, lewm.surprise):
        monkeypatch.setattr(module, "load_run_model", lambda *a, **k: oracle)
    r = lewm.probe.probe(tiny_run, max_rows=400, force=True)
    assert r["probes"]["linear"]["agent_position"]["r"] > 0.99
    r = lewm.surprise.surprise(tiny_run, trajectories=16, blocks=8, force=True)
    assert r["variants"]["teleport"]["p_value"] < 0.01
    assert r["variants"]["teleport"]["auroc_peak"] > 0.9


def test_ablate_measures_each_regulariser_in_messy_scenes(tworoom_file, tmp_path):
    out = tmp_path / "ablate"
    proc = run_cli("ablate", "--preset", "tiny", "--data", tworoom_file, "--out", out,
                   "--regularizers", "sigreg,none", "--episodes", 2, "--set", "steps=4",
                   "--perturb", "distractors:0.3,hue", "--quiet")
    assert "| distractors:0.3 | hue:0.5 |" in proc.stdout and "distractor r" in proc.stdout
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    for row in rows:
        assert list(row["scenes"]) == ["distractors:0.3", "hue:0.5"]
        assert "distractor_position" in row["scenes"]["distractors:0.3"]["probe_r"]
        assert (out / row["regularizer"] / "robustness.json").exists()
    (out / "ablation.json").unlink()  # resumed: the scenes are not measured again
    again = run_cli("ablate", "--preset", "tiny", "--data", tworoom_file, "--out", out,
                    "--regularizers", "sigreg,none", "--episodes", 2, "--set", "steps=4",
                    "--perturb", "distractors:0.3,hue", "--quiet")
    assert "clean:" not in again.stdout
    assert json.loads((out / "ablation.json").read_text())["rows"] == rows
