"""`lewm export --format onnx`: the graphs match torch, hold the actor when there is one, and
never replace what lewm did not write."""

import json

import pytest
from conftest import run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_the_graphs_match_torch_within_1e4(tiny_run, tmp_path):
    from lewm.export_onnx import OnnxModel, verify

    run_cli("train-actor", tiny_run, "--steps", 20, "--hidden", 32, "--depth", 1, "--quiet",
            "--force")
    out = tmp_path / "onnx"
    r = run_cli("export", tiny_run, "--format", "onnx", "--out", out)
    assert "largest difference" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder", "predictor", "actor"}
    assert manifest["world"] == "tworoom" and len(manifest["action_z"]["mean"]) == 2
    worst = verify(out, tiny_run, blocks=5)
    assert set(worst) == {"embeddings", "prediction", "rollout", "actor"}
    assert max(worst.values()) <= 1e-4, worst
    onnx = OnnxModel(out)
    import numpy as np

    emb = onnx.encode(np.zeros((7, 32, 32, 3), np.uint8))  # any batch size
    assert emb.shape == (7, manifest["embed_dim"])


def test_an_export_replaces_only_an_earlier_export(tiny_run, tmp_path):
    out = tmp_path / "onnx"
    run_cli("export", tiny_run, "--format", "onnx", "--out", out)
    again = run_cli("export", tiny_run, "--format", "onnx", "--out", out, check=False)
    assert again.returncode != 0 and "--force" in again.stderr
    run_cli("export", tiny_run, "--format", "onnx", "--out", out, "--force")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    r = run_cli("export", tiny_run, "--format", "onnx", "--out", mine, "--force", check=False)
    assert r.returncode != 0 and "not written by lewm export" in r.stderr
    assert (mine / "notes.txt").read_text() == "a user's file"
    assert "Traceback" not in r.stderr
