import numpy as np
import pytest

from lewm.envs import make_env, tworoom
from lewm.errors import LewmError


@pytest.fixture
def env():
    return make_env("tworoom", 64)


def test_spaces_and_dtypes(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3)
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    for key in ("state", "proprio", "goal_state"):
        assert info[key].shape == (2,) and info[key].dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)


@pytest.mark.parametrize("size", [16, 64, 224])
def test_any_render_size(size):
    env = make_env("tworoom", size)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (size, size, 3)


def test_same_seed_same_trajectory():
    def trajectory(seed):
        env = make_env("tworoom", 32)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        frames = [obs]
        for _ in range(30):
            obs, *_ = env.step(rng.uniform(-1, 1, 2))
            frames.append(obs)
        return np.stack(frames)

    np.testing.assert_array_equal(trajectory(5), trajectory(5))
    assert not np.array_equal(trajectory(5), trajectory(6))


def test_moves_five_units_and_clips_action(env):
    env.reset(seed=0, options={"state": [50, 150], "goal_state": [190, 190]})
    *_, info = env.step(np.array([3.0, -0.5]))  # x clipped to 1
    np.testing.assert_allclose(info["state"], [55, 147.5])


def test_clamped_to_room(env):
    env.reset(seed=0, options={"state": [22, 200], "goal_state": [190, 30]})
    *_, info = env.step(np.array([-1.0, 1.0]))
    np.testing.assert_allclose(info["state"], [tworoom.POS_LOW, tworoom.POS_HIGH])


def test_wall_stops_outside_the_door(env):
    env.reset(seed=0, options={"state": [104, 150], "goal_state": [190, 150]})
    for _ in range(5):
        *_, info = env.step(np.array([1.0, 0.0]))
    np.testing.assert_allclose(info["state"], [tworoom.WALL_X[0], 150])
    env.reset(seed=0, options={"state": [120, 150], "goal_state": [30, 150]})
    for _ in range(5):
        *_, info = env.step(np.array([-1.0, 0.0]))
    np.testing.assert_allclose(info["state"], [tworoom.WALL_X[1], 150])


def test_door_lets_the_agent_through(env):
    env.reset(seed=0, options={"state": [100, 49], "goal_state": [190, 49]})
    for _ in range(6):
        *_, info = env.step(np.array([1.0, 0.0]))
    assert info["state"][0] > tworoom.WALL_X[1]
    # Inside the doorway, moving up or down stops at the door's edge.
    env.reset(seed=0, options={"state": [112, 40], "goal_state": [190, 49]})
    for _ in range(3):
        *_, info = env.step(np.array([0.0, -1.0]))
    np.testing.assert_allclose(info["state"], [112, tworoom.DOOR_Y[0]])


def test_success_rule(env):
    env.reset(seed=0, options={"state": [50, 150], "goal_state": [50 + 15.9, 150]})
    assert env.success()
    env.reset(seed=0, options={"state": [50, 150], "goal_state": [50 + 16.1, 150]})
    assert not env.success()
    _, _, terminated, _, info = env.step(np.array([1.0, 0.0]))
    assert terminated and info["success"]


def test_goal_image_shows_the_agent_at_the_goal(env):
    obs, info = env.reset(seed=0, options={"state": [50, 150], "goal_state": [180, 60]})
    goal = env.goal_pixels()
    np.testing.assert_array_equal(goal, env.render_state([180, 60]))
    red = (goal[..., 0] > 200) & (goal[..., 1] < 60)
    ys, xs = np.nonzero(red)
    assert abs(xs.mean() / 64 * 224 - 180) < 6 and abs(ys.mean() / 64 * 224 - 60) < 6


def test_random_starts_are_free_space():
    env = make_env("tworoom", 32)
    for seed in range(50):
        _, info = env.reset(seed=seed)
        assert tworoom.is_free(info["state"]) and tworoom.is_free(info["goal_state"])


@pytest.mark.parametrize("state", [[5, 50], [112, 150], [np.nan, 40], [1, 2, 3]])
def test_bad_states_are_refused(env, state):
    with pytest.raises(LewmError, match="state"):
        env.reset(seed=0, options={"state": state})


def test_unknown_world_and_tiny_size():
    with pytest.raises(LewmError, match="unknown world"):
        make_env("nowhere")
    with pytest.raises(LewmError, match="too small"):
        make_env("tworoom", 8)


def test_gymnasium_registration():
    import gymnasium as gym

    env = gym.make("lewm/TwoRoom-v0", size=32)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3)


def test_noisy_expert_reaches_the_goal_without_noise():
    from lewm.envs.policies import TwoRoomNoisyExpert

    env = make_env("tworoom", 32)
    policy = TwoRoomNoisyExpert(noise_std=0.0)
    successes = 0
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        policy.reset(info, np.random.default_rng(seed))
        for _ in range(100):
            obs, _, terminated, _, info = env.step(policy(obs, info))
            if terminated:
                successes += 1
                break
    assert successes == 20


def test_frames_are_drawn_as_the_authors_draw_them():
    """At 224 px the frame is the authors' (docs/parity.md): pixel i at coordinate i, 4 px
    border lines across the whole image, the wall in columns 107-117 down every row but the
    door (rows 35-63), and the dot's nearest pixel pure red."""
    img = make_env("tworoom", 224).render_state(np.array([60.0, 150.0]))
    black = (img == 0).all(-1)
    assert black[:, 10:14].all() and black[10:14, :].all() and not black[20, 14]
    assert black[:, 210:214].all() and black[210:214, :].all() and not black[20, 209]
    wall = black[:, 107:118]
    assert wall[:35].all() and wall[64:].all() and not wall[35:64].any()
    assert not black[100, 106] and not black[100, 118]
    assert tuple(img[150, 60]) == (255, 0, 0)
