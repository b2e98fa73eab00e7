import h5py
import numpy as np
import pytest
from conftest import write_episode_file

from lewm.data.clips import ClipDataset, EpisodeData, batch_indices, fit_stats, split_episodes
from lewm.data.collect import CollectConfig, collect
from lewm.errors import LewmError

IDENTITY = {"action": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}}


def test_windows_and_action_blocks_match_a_hand_built_file(tmp_path):
    path = write_episode_file(tmp_path / "hand.h5", [30, 25])
    data = EpisodeData(path, columns=("state",))
    ds = ClipDataset(data, [0, 1], clip_frames=4, frameskip=5, stats=IDENTITY)
    # Starts s with s + 20 - 1 <= len - 2: 10 in episode 0, 5 in episode 1.
    assert len(ds) == 10 + 5
    np.testing.assert_array_equal(ds.starts, list(range(10)) + list(range(30, 35)))
    clip = ds[11]  # episode 1, local start 1 -> global row 31
    assert clip["pixels"].shape == (4, 16, 16, 3) and clip["pixels"].dtype == np.uint8
    np.testing.assert_array_equal(clip["pixels"][:, 0, 0, 0], [31, 36, 41, 46])
    assert clip["action"].shape == (4, 10)
    # Frame k's block = raw actions of rows 31+5k .. 31+5k+4, each (a0, a1) in turn.
    expected = np.stack([np.stack([[r, r + 0.1] for r in range(31 + 5 * k, 36 + 5 * k)]).ravel()
                         for k in range(4)])
    np.testing.assert_allclose(clip["action"], expected, rtol=1e-6)
    np.testing.assert_array_equal(clip["state"][:, 0], [31, 36, 41, 46])
    assert np.isfinite(ds.batch(np.arange(len(ds)))["action"]).all()  # no terminal NaN used


def test_actions_are_z_scored_with_training_stats(tmp_path):
    path = write_episode_file(tmp_path / "hand.h5", [30, 25, 40])
    data = EpisodeData(path)
    stats = fit_stats(data, [0, 2])
    rows = np.r_[0:29, 55:94]  # non-terminal rows of episodes 0 and 2
    np.testing.assert_allclose(stats["action"]["mean"], [rows.mean(), rows.mean() + 0.1], rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], [rows.std(), rows.std()], rtol=1e-5)
    ds = ClipDataset(data, [0], clip_frames=2, frameskip=1, stats=stats)
    a = ds[0]["action"]
    np.testing.assert_allclose(a[:, 0], (np.array([0, 1]) - rows.mean()) / rows.std(), rtol=1e-5)
    assert set(stats) == {"action", "state"}


def test_split_is_by_episode_and_deterministic():
    train, val = split_episodes(50, 0.1, seed=0)
    assert len(val) == 5 and len(train) == 45
    assert not set(train) & set(val) and set(train) | set(val) == set(range(50))
    again = split_episodes(50, 0.1, seed=0)
    np.testing.assert_array_equal(train, again[0])
    assert not np.array_equal(val, split_episodes(50, 0.1, seed=1)[1])
    assert len(split_episodes(3, 0.01, 0)[1]) == 1  # at least one validation episode


def test_clips_never_cross_episodes(tworoom_file):
    data = EpisodeData(tworoom_file, columns=("state",))
    train, val = split_episodes(data.num_episodes, 0.25, seed=0)
    ds = ClipDataset(data, val, clip_frames=4, frameskip=5, stats=fit_stats(data, train))
    ep_of_row = np.repeat(np.arange(data.num_episodes), data.ep_len)
    assert set(ep_of_row[ds.starts]) == set(val)
    last = ds.starts + 15
    assert np.array_equal(ep_of_row[ds.starts], ep_of_row[last])


def test_collect_round_trip_and_determinism(tmp_path):
    cfg = CollectConfig(episodes=5, steps=12, size=24, seed=7, num_envs=2)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    collect(cfg, a, progress=False)
    collect(CollectConfig(episodes=5, steps=12, size=24, seed=7, num_envs=3), b, progress=False)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert fa["pixels"].shape == (5 * 13, 24, 24, 3) and fa["pixels"].dtype == np.uint8
        np.testing.assert_array_equal(fa["ep_len"][()], [13] * 5)
        np.testing.assert_array_equal(fa["ep_offset"][()], np.arange(5) * 13)
        action = fa["action"][()]
        assert np.isnan(action[12::13]).all()
        assert np.isfinite(np.delete(action, np.s_[12::13], 0)).all()
        assert np.abs(action[np.isfinite(action)]).max() <= 1.0
        for name in ("pixels", "action", "state", "proprio"):
            np.testing.assert_array_equal(fa[name][()], fb[name][()])
        assert fa.attrs["env"] == "lewm/TwoRoom-v0" and fa.attrs["seed"] == 7
        # The stored frames are what the env renders at the stored states.
        from lewm.envs import make_env

        env = make_env("tworoom", 24)
        np.testing.assert_array_equal(fa["pixels"][7], env.render_state(fa["state"][7]))
    assert not list(tmp_path.glob(".*tmp*"))


def test_collect_in_worker_processes_writes_the_same_file(tmp_path):
    """Episodes are dealt to worker processes and written back in order: the file is the one
    a single process writes, whatever the number of workers."""
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    base = dict(world="pusht", episodes=5, steps=6, size=24, seed=3, num_envs=2)
    collect(CollectConfig(**base), one, progress=False)
    out = collect(CollectConfig(**base, workers=3), two, progress=False)
    assert out["episodes"] == 5 and out["rows"] == 5 * 7
    with h5py.File(one) as fa, h5py.File(two) as fb:
        for name in ("pixels", "action", "state", "proprio", "ep_len", "ep_offset"):
            np.testing.assert_array_equal(fa[name][()], fb[name][()])
        assert fb.attrs["workers"] == 3 and fb.attrs["episodes_solved"] == fa.attrs[
            "episodes_solved"]
    with pytest.raises(LewmError, match="--workers must be >= 1"):
        CollectConfig(workers=0)


def test_authors_style_file_without_lowdim_columns(tmp_path):
    path = write_episode_file(tmp_path / "authors.h5", [12, 12], size=224, state=None)
    data = EpisodeData(path)
    assert data.image_size == (224, 224) and data.lowdim == {}
    ds = ClipDataset(data, [0, 1], clip_frames=4, frameskip=2, stats=fit_stats(data, [0, 1]))
    assert set(ds[0]) == {"pixels", "action"}


def test_lazy_reading_matches_memory(tworoom_file):
    mem = EpisodeData(tworoom_file, in_memory=True)
    lazy = EpisodeData(tworoom_file, in_memory=False)
    stats = fit_stats(mem, range(mem.num_episodes))
    a = ClipDataset(mem, range(12), 4, 5, stats).batch(np.arange(0, 200, 7))
    b = ClipDataset(lazy, range(12), 4, 5, stats).batch(np.arange(0, 200, 7))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_compressed_files_read_frame_by_frame_as_from_memory(tmp_path):
    """lewm writes compressed images one frame per chunk, and reads a clip's frames alone
    from such a file: the same batches as from memory (and as the contiguous reads)."""
    from lewm.data.collect import CollectConfig, collect

    path = tmp_path / "lzf.h5"
    collect(CollectConfig(episodes=4, steps=30, size=16, compression="lzf"), path,
            progress=False)
    mem, lazy = EpisodeData(path, in_memory=True), EpisodeData(path, in_memory=False)
    assert lazy.file["pixels"].chunks[0] == 1 and lazy.frame_reads and not mem.frame_reads
    stats = fit_stats(mem, range(4))
    picks = np.arange(0, len(ClipDataset(mem, range(4), 4, 5, stats)), 3)
    a = ClipDataset(mem, range(4), 4, 5, stats).batch(picks)
    b = ClipDataset(lazy, range(4), 4, 5, stats).batch(picks)
    lazy.frame_reads = False  # the contiguous path over the same file
    c = ClipDataset(lazy, range(4), 4, 5, stats).batch(picks)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])


def test_batches_are_stateless_in_step():
    first = [batch_indices(100, 8, seed=0, step=s) for s in range(30)]
    assert all(len(b) == 8 for b in first)
    np.testing.assert_array_equal(first[17], batch_indices(100, 8, seed=0, step=17))
    # One epoch (12 batches) visits 96 distinct clips.
    assert len(set(np.concatenate(first[:12]))) == 96
    with pytest.raises(LewmError, match="fewer than the batch size"):
        batch_indices(4, 8, 0, 0)


def test_too_short_episodes_are_refused(tmp_path):
    data = EpisodeData(write_episode_file(tmp_path / "short.h5", [10, 12]))
    with pytest.raises(LewmError, match="long enough"):
        ClipDataset(data, [0, 1], 4, 5, IDENTITY)


def test_one_action_normaliser_for_data_planner_and_study():
    """Clips, the planner's action scaler and the surprise study z-score actions with the same
    statistics: a raw block through the scaler's z-scores and back is itself."""
    import gymnasium as gym
    import torch

    from lewm.model.normalize import ZScore
    from lewm.planning.mpc import ActionScaler

    stats = {"action": {"mean": [0.5, -1.0], "std": [2.0, 0.25]}}
    z = ZScore.of(stats)
    raw = np.array([[1.5, -0.5], [0.5, -1.0]], np.float32)
    np.testing.assert_allclose(z.to_z(raw), [[0.5, 2.0], [0.0, 0.0]])
    scaler = ActionScaler(z, 3, gym.spaces.Box(-5, 5, (2,)))
    block = np.array([1.5, -0.5, 0.5, -1.0, -1.5, -0.75], np.float32)
    back = scaler.to_env(torch.from_numpy(z.blocks(3).to_z(block)))
    np.testing.assert_allclose(back, block.reshape(3, 2), atol=1e-6)
    np.testing.assert_allclose(scaler.low_z[:2], (np.array([-5, -5]) - [0.5, -1]) / [2, 0.25])


@pytest.mark.parametrize("workers", [0, 2])
def test_prefetcher_keeps_order_and_raises_where_it_failed(workers):
    """On a thread or in worker processes: batches in step order, a failing step raises its
    own exception (type and message, not a worker's traceback), leaving early stops the
    readers."""
    import torch

    from lewm.data.prefetch import prefetcher

    def make(step):
        if step == 7:
            raise ValueError("bad step 7")
        return (torch.full((2,), step),)

    got = [(s, int(b[0][0])) for s, b in prefetcher(make, range(3, 7), workers=workers)]
    assert got == [(3, 3), (4, 4), (5, 5), (6, 6)]
    seen = []
    with pytest.raises(ValueError) as failed:
        for s, _ in prefetcher(make, range(5, 10), workers=workers):
            seen.append(s)
    assert str(failed.value) == "bad step 7" and seen == [5, 6]
    with prefetcher(make, range(0, 50), depth=1, workers=workers) as early:
        readers = early._it._workers if workers else [early.thread]
        next(iter(early))
    assert readers and not any(r.is_alive() for r in readers)
