"""`lewm train --log wandb`: the curves go to W&B beside metrics.jsonl, offline without a
network."""

import pytest
from conftest import run_cli


def test_training_logs_to_wandb_offline(tworoom_file, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    run_cli("train", "--preset", "tiny", "--data", tworoom_file, "--out", out, "--set",
            "steps=6", "--set", "log_every=2", "--log", "wandb", "--quiet")
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert (out / "wandb-id").read_text().strip() in runs[0].name
    assert (out / "metrics.jsonl").exists()  # beside, not instead
