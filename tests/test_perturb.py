"""Render-time perturbations (lewm.perturb): they change pixels only, the same way for the
same seed, where they should, and `lewm eval --perturb` / `lewm robustness` report them."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import run_cli

from lewm.envs import make_env
from lewm.errors import LewmError
from lewm.perturb import FAMILIES, GOAL_T, PerturbedEnv, floor_weights, parse

WORLDS = ("tworoom", "pusht")


def rollout(env, actions, start):
    """Frames, states, rewards, terminations and successes of one episode."""
    obs, info = env.reset(seed=0, options=start)
    out = {"frames": [obs], "state": [info["state"]], "reward": [], "done": [],
           "success": [env.success()], "strict": [env.strict_success()]}
    for a in actions:
        obs, reward, done, _, info = env.step(a)
        out["frames"].append(obs)
        out["state"].append(info["state"])
        out["reward"].append(reward)
        out["done"].append(done)
        out["success"].append(env.success())
        out["strict"].append(env.strict_success())
    out["goal"] = env.goal_pixels()
    return out


@pytest.fixture(scope="module")
def episodes():
    """Per world: a start/goal pair, 12 actions, and the clean episode they make."""
    rng = np.random.default_rng(0)
    made = {}
    for world in WORLDS:
        env = make_env(world, 32)
        _, info = env.reset(seed=1)
        start = {"state": info["state"], "goal_state": info["goal_state"]}
        actions = rng.uniform(-1, 1, (12, env.action_space.shape[0]))
        made[world] = (start, actions, rollout(env, actions, start))
        env.close()
    return made


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_perturbation_changes_pixels_only(world, family, episodes):
    start, actions, clean = episodes[world]
    env = PerturbedEnv(make_env(world, 32), parse(family), [7, 0])
    seen = rollout(env, actions, start)
    for key in ("state", "reward", "done", "success", "strict"):
        np.testing.assert_array_equal(np.asarray(seen[key]), np.asarray(clean[key]), key)
    assert any(not np.array_equal(a, b) for a, b in zip(seen["frames"], clean["frames"]))
    assert not np.array_equal(seen["goal"], clean["goal"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_same_seed_draws_the_same_scene_bit_for_bit(family, episodes):
    start, actions, _ = episodes["pusht"]
    runs = [rollout(PerturbedEnv(make_env("pusht", 32), parse(family), seed), actions, start)
            for seed in ([3, 1], [3, 1], [3, 2])]
    for a, b in zip(runs[0]["frames"], runs[1]["frames"]):
        assert np.array_equal(a, b)
    if family != "blur":  # blur draws nothing: every episode is blurred alike
        assert any(not np.array_equal(a, b) for a, b in zip(runs[0]["frames"], runs[2]["frames"]))


@pytest.mark.parametrize("family", ["colour", "texture", "distractors"])
def test_floor_families_leave_the_task_objects_alone(family, episodes):
    """What paints the floor never touches a pixel with no floor in it (the agent, the
    block, the walls): it distracts but never occludes."""
    start, actions, clean = episodes["pusht"]
    env = PerturbedEnv(make_env("pusht", 32), parse(family + ":1"), [5, 0])
    seen = rollout(env, actions, start)
    for a, b in zip(clean["frames"], seen["frames"]):
        objects = floor_weights(a, env.floor_rgb) == 0
        assert objects.sum() > 20
        assert np.array_equal(a[objects], b[objects])
        assert not np.array_equal(a[~objects], b[~objects])


def test_distractors_move_on_their_own_and_only_where_they_are():
    scene = parse("distractors:1").scene([0, 0], 32)
    blank = np.full((32, 32, 3), 255, np.uint8)
    floor = np.ones((32, 32))
    a, b = scene.apply(blank, 0, floor), scene.apply(blank, 5, floor)
    assert not np.array_equal(a, b)  # they moved with no action taken
    changed = np.any(a != 255, -1)
    assert 0 < changed.mean() < 0.6  # shapes on a floor that is mostly still floor
    centres = scene.centres(0)
    for cx, cy in centres:  # each shape's centre is painted
        assert changed[int(cy), int(cx)]
    assert np.all((centres >= 0) & (centres <= 32))
    assert np.all(scene.centres(1000) >= 0) and np.all(scene.centres(1000) <= 32)
    # the goal image is drawn at its own time, one step before the episode's start
    assert np.array_equal(scene.apply(blank, GOAL_T, floor), scene.apply(blank, -1, floor))


def test_hue_keeps_greys_and_noise_is_fresh_every_frame():
    grey = np.full((8, 8, 3), 120, np.uint8)
    assert np.array_equal(parse("hue:1").scene([0], 8).apply(grey, 0, None), grey)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert not np.array_equal(parse("hue").scene([0], 8).apply(red, 0, None), red)
    noise = parse("noise").scene([0], 8)
    assert not np.array_equal(noise.apply(grey, 1, None), noise.apply(grey, 2, None))
    assert np.array_equal(noise.apply(grey, 1, None), noise.apply(grey, 1, None))


@pytest.mark.parametrize("spec, message", [
    ("fog", "unknown perturbation 'fog'"), ("noise:2", "level must be in (0, 1]"),
    ("noise:0", "level must be in (0, 1]"), ("blur:x", "is not a number"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(LewmError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(spec)


def test_a_world_without_a_known_floor_refuses_floor_families():
    class Plain:
        name, size, knows_floor = "plain", 16, False

    with pytest.raises(LewmError, match="paints the floor"):
        PerturbedEnv(Plain(), parse("texture"), [0])
    PerturbedEnv(Plain(), parse("camera"), [0])  # needs no floor


def test_eval_perturb_records_the_scene_and_keeps_the_random_floor(tiny_run):
    run_cli("eval", tiny_run, "--episodes", 4, "--gifs", 1, "--name", "eval-clean4.json",
            "--budget", 10)
    clean = json.loads((tiny_run / "eval-clean4.json").read_text())
    run_cli("eval", tiny_run, "--manifest", tiny_run / "eval-clean4.json", "--perturb",
            "distractors:0.7", "--gifs", 1, "--name", "eval-d4.json")
    seen = json.loads((tiny_run / "eval-d4.json").read_text())
    assert clean["perturb"] is None
    assert seen["perturb"]["name"] == "distractors" and seen["perturb"]["level"] == 0.7
    assert seen["manifest"]["sha256"] == clean["manifest"]["sha256"]
    # the random policy never looks at the frames
    assert ([e["random_success"] for e in seen["episodes"]]
            == [e["random_success"] for e in clean["episodes"]])
    r = run_cli("eval", tiny_run, "--episodes", 2, "--perturb", "fog", check=False)
    assert r.returncode != 0 and "unknown perturbation 'fog'" in r.stderr
    assert "Traceback" not in r.stderr


def test_robustness_writes_a_row_per_scene_beside_clean(tiny_run):
    r = run_cli("robustness", tiny_run, "--episodes", 3, "--budget", 10, "--perturb",
                "colour", "camera:0.3")
    assert "robustness.json" in r.stdout
    result = json.loads((tiny_run / "robustness.json").read_text())
    assert [p["spec"] for p in result["perturbations"]] == ["colour:0.5", "camera:0.3"]
    for p in result["perturbations"]:
        assert p["clean_success_rate"] == result["clean"]["success_rate"]
        assert p["held_out"] is True  # the tiny run's data is clean
        assert 0 <= p["success_rate"] <= 1 and "strict" in p
        assert p["random_success_rate"] == result["clean"]["random_success_rate"]
        sub = json.loads((tiny_run / p["evaluation"]).read_text())
        assert sub["manifest"]["sha256"] == result["manifest"]["sha256"]
    assert (tiny_run / "robustness.png").stat().st_size > 0
    assert set(result["probe"]) == {"clean", "colour:0.5", "camera:0.3"}
    assert "agent_position" in result["perturbations"][0]["probe_r"]
    again = run_cli("robustness", tiny_run, "--episodes", 3, "--perturb", "colour",
                    check=False)
    assert again.returncode != 0 and "--force" in again.stderr


def test_show_perturb_draws_the_episode_beside_its_scene(tworoom_file, tmp_path):
    out = tmp_path / "ep.gif"
    run_cli("show", tworoom_file, "--perturb", "texture", "--out", out)
    from PIL import Image

    with Image.open(out) as gif:
        assert gif.size[0] > 2 * gif.size[1] - 10  # clean | perturbed


@pytest.mark.parametrize("world", ["reacher", "cube"])
def test_mujoco_worlds_paint_their_floor_from_segmentation(world):
    """Reacher and Cube tell the floor from the arm and objects by MuJoCo's segmentation
    rendering: the floor families leave every object pixel alone and the state untouched."""
    if importlib.util.find_spec("mujoco") is None:  # not imported: lewm picks its GL first
        pytest.skip("needs lewm[worlds]")
    clean_env = make_env(world, 32)
    env = PerturbedEnv(make_env(world, 32), parse("distractors:1"), [1, 0])
    try:
        _, info = clean_env.reset(seed=2)
        start = {"state": info["state"], "goal_state": info["goal_state"]}
        actions = np.random.default_rng(0).uniform(-1, 1, (4, env.action_space.shape[0]))
        clean, seen = rollout(clean_env, actions, start), rollout(env, actions, start)
        np.testing.assert_array_equal(np.asarray(seen["state"]), np.asarray(clean["state"]))
        objects = env.background_weights(clean["goal"], start["goal_state"]) == 0
        assert 0 < objects.mean() < 0.9
        assert np.array_equal(clean["goal"][objects], seen["goal"][objects])
        assert not np.array_equal(clean["goal"], seen["goal"])
    finally:
        clean_env.close()
        env.close()


def test_collect_distractors_changes_pixels_only_and_training_remembers(tmp_path):
    import h5py

    from lewm.data.collect import CollectConfig, collect
    from lewm.train import training_families

    base = CollectConfig(episodes=6, steps=8, size=16, seed=4, num_envs=3)
    collect(base, tmp_path / "clean.h5", progress=False)
    messy = CollectConfig(**{**base.__dict__, "distractors": "none,colour:0.8,distractors"})
    collect(messy, tmp_path / "messy.h5", progress=False)
    with h5py.File(tmp_path / "clean.h5") as a, h5py.File(tmp_path / "messy.h5") as b:
        for col in ("state", "action", "ep_len"):
            np.testing.assert_array_equal(a[col][:], b[col][:])
        per_episode = [np.array_equal(a["pixels"][i * 9:(i + 1) * 9],
                                      b["pixels"][i * 9:(i + 1) * 9]) for i in range(6)]
        assert not all(per_episode)  # some episodes were rendered messy
        assert training_families(b.attrs["distractors"]) == ["colour", "distractors"]
    r = run_cli("collect", "tworoom", "--episodes", 2, "--steps", 4, "--distractors",
                "colour,fog", "--out", tmp_path / "bad.h5", check=False)
    assert r.returncode != 0 and "unknown perturbation 'fog'" in r.stderr
    assert not (tmp_path / "bad.h5").exists()


class CentroidModel:
    """A stand-in Two-Room encoder that reads positions off the pixels and nothing else: the
    centroid of the red agent's pixels and of every other colour painted over the floor
    (the distractors; the wall is grey)."""

    def __init__(self, size):
        import types

        import torch

        self.card = types.SimpleNamespace(world="tworoom", image_size=size)
        self.device = torch.device("cpu")

    def encode(self, frames):
        import torch

        out = []
        for f in frames[:, 0].numpy().astype(int):
            painted = floor_weights(f, (255, 255, 255)) < 0.5
            wall = f.max(-1) - f.min(-1) < 60  # the black wall and its grey edges
            red = (f[..., 0] > 200) & (f[..., 1] < 120) & (f[..., 2] < 120)
            ys, xs = np.nonzero(red)
            dy, dx = np.nonzero(painted & ~wall & ~red)
            out.append([xs.mean(), ys.mean(), dx.mean() if len(dx) else 0,
                        dy.mean() if len(dy) else 0])
        return torch.tensor(out, dtype=torch.float32)[:, None]  # (n, 1, 4)


def test_the_probe_reads_a_distractor_from_pixels_where_it_is_visible():
    from lewm.robustness import probe_scene

    r = probe_scene(CentroidModel(32), "distractors:0.1", episodes=48, steps=10)
    assert r["distractor_position"] > 0.75  # one shape, read off the pixels where visible
    assert r["agent_position"] > 0.8
    assert set(probe_scene(CentroidModel(32), "", episodes=8, steps=4)) == {
        "agent_position"}


def test_training_with_an_invariance_term_logs_it_and_marks_its_families_seen(tworoom_file,
                                                                             tmp_path):
    import dataclasses

    from lewm.recipes import get_recipe
    from lewm.robustness import training_families
    from lewm.train import clip_augmenter, train

    cfg = dataclasses.replace(get_recipe("tiny").train, augment="none,colour,distractors",
                              invariance=1.0, steps=6, log_every=2)
    clips = np.full((3, 2, 32, 32, 3), 255, np.uint8)
    a, b = clip_augmenter(cfg)(clips, [0, 1]), clip_augmenter(cfg)(clips, [0, 1])
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), clips)
    train(cfg, tworoom_file, tmp_path / "run", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["invariance"] >= 0 for r in rows if r["split"] == "train")
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert training_families(meta) == {"colour", "distractors"}
    with pytest.raises(LewmError, match="needs augment"):
        dataclasses.replace(cfg, augment="")
    with pytest.raises(LewmError, match="unknown perturbation"):
        dataclasses.replace(cfg, augment="colour,fog")
