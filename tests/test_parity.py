"""lewm's paper model is the authors' model: the same weights give the same outputs.

The authors' modules come from their library, stable-worldmodel (see tests/peer.py); the
tests skip when it is not installed. docs/parity.md tabulates the same comparison
(`python bench/parity.py`).
"""

import peer as peer_lib
import pytest
import torch
from conftest import run_cli

from lewm.model import LeWM
from lewm.model.authors import LAYOUTS, detect_layout, from_authors, to_authors
from lewm.recipes import RECIPES

TOL = 1e-5  # fp32


@pytest.fixture(scope="module")
def pair():
    lib = peer_lib.load()
    torch.manual_seed(0)
    theirs = peer_lib.build(lib).eval()
    peer_lib.randomize(theirs)
    ours = LeWM(RECIPES["paper"].train.model).eval()
    ours.load_state_dict(from_authors(theirs.state_dict()))
    return lib, theirs, ours


def test_state_dict_has_303_tensors(pair):
    _, theirs, _ = pair
    assert len(theirs.state_dict()) == 303


def test_outputs_match(pair):
    lib, theirs, ours = pair
    diffs = peer_lib.compare(lib, theirs, ours)
    assert len(diffs) == 5
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"outputs differ by more than {TOL}: {bad}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_state_dict_round_trip(pair, layout):
    _, theirs, ours = pair
    state = ours.state_dict()
    authors = to_authors(state, layout)
    assert detect_layout(authors) == layout and len(authors) == 303
    back = from_authors(authors)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    if layout == "5":  # the installed transformers is 5.x: the authors' module loads it as is
        theirs.load_state_dict(authors, strict=True)


def peer_embeddings(model, pixels):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    x = (pixels.permute(0, 1, 4, 2, 3).float() / 255 - mean) / std
    with torch.no_grad():
        return model.encode({"pixels": x})["emb"]


@pytest.fixture(scope="module")
def tworoom224(tmp_path_factory):
    """Two-Room at the paper model's 224 px: an imported model is used with data its size."""
    from lewm.data.collect import CollectConfig, collect

    path = tmp_path_factory.mktemp("data224") / "tworoom224.h5"
    collect(CollectConfig(episodes=4, steps=30, size=224, seed=3), path, progress=False)
    return path


@pytest.mark.parametrize("layout", LAYOUTS)
def test_import_an_authors_checkpoint(pair, layout, tmp_path, tworoom224):
    tworoom_file = tworoom224
    import json

    import lewm

    _, theirs, _ = pair
    src = tmp_path / "hf"
    src.mkdir()
    torch.save(to_authors(from_authors(theirs.state_dict()), layout), src / "weights.pt")
    (src / "config.json").write_text(json.dumps(peer_lib.RELEASED_CONFIG))
    run_cli("import", src, "--data", tworoom_file, "--out", tmp_path / "run")
    model = lewm.load(tmp_path / "run")
    assert (model.cfg.frameskip, model.cfg.action_dim, model.cfg.history) == (5, 2, 3)
    pixels = torch.randint(0, 256, (2, 2, 224, 224, 3), dtype=torch.uint8)
    with torch.no_grad():
        ours = model.encode(pixels)
    assert (ours - peer_embeddings(theirs, pixels)).abs().max() <= TOL
    if layout == "4":  # the imported run plans with lewm's protocol like any other
        run_cli("eval", tmp_path / "run", "--episodes", "2", "--samples", "8", "--elites", "2",
                "--iterations", "1", "--gifs", "0", "--offset", "10", "--budget", "10")
        assert (tmp_path / "run" / "eval.json").exists()
    again = run_cli("import", src, "--data", tworoom_file, "--out", tmp_path / "run",
                    check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_export_loads_with_the_authors_loader(pair, tmp_path, tworoom224):
    """`lewm export` writes what the authors' `load_pretrained` builds with Hydra and loads
    strictly; the round trip through lewm keeps every tensor."""
    import json

    hydra = pytest.importorskip("hydra", reason="hydra-core is not installed")
    import lewm

    _, theirs, _ = pair
    src = tmp_path / "hf"
    src.mkdir()
    torch.save(theirs.state_dict(), src / "weights.pt")
    (src / "config.json").write_text(json.dumps(peer_lib.RELEASED_CONFIG))
    run_cli("import", src, "--data", tworoom224, "--out", tmp_path / "run")
    run_cli("export", tmp_path / "run", "--out", tmp_path / "out", "--transformers", "5")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    rebuilt = hydra.utils.instantiate(config).eval()
    rebuilt.load_state_dict(torch.load(tmp_path / "out" / "weights.pt", weights_only=True))
    pixels = torch.randint(0, 256, (1, 2, 224, 224, 3), dtype=torch.uint8)
    assert torch.equal(peer_embeddings(rebuilt, pixels), peer_embeddings(theirs, pixels))
    back = from_authors(torch.load(tmp_path / "out" / "weights.pt", weights_only=True))
    state = lewm.load(tmp_path / "run").state_dict()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_import_refuses_pickles_and_bad_configs(tmp_path, tworoom_file):
    src = tmp_path / "ckpt"
    src.mkdir()
    torch.save(torch.nn.Linear(2, 2), src / "lewm_object.ckpt")
    r = run_cli("import", src, "--data", tworoom_file, "--out", tmp_path / "run", check=False)
    assert r.returncode == 2 and "pickled module" in r.stderr and "Traceback" not in r.stderr
    torch.save(torch.nn.Linear(2, 2), src / "weights.pt")
    (src / "config.json").write_text("{}")
    r = run_cli("import", src, "--data", tworoom_file, "--out", tmp_path / "run", check=False)
    assert r.returncode == 2 and "weights.pt" in r.stderr and len(r.stderr.splitlines()) == 1
    torch.save({"a": torch.zeros(1)}, src / "weights.pt")
    r = run_cli("import", src, "--data", tworoom_file, "--out", tmp_path / "run", check=False)
    assert r.returncode == 2 and "no 'encoder' node" in r.stderr
    assert not (tmp_path / "run").exists()
