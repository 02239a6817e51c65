"""Gymnasium, Stable-Baselines3 and TorchRL views of DenoiseEnv (hear_vec.interop).

Groups: spaces and specs (in-space outputs over several autoreset episodes, TorchRL's
check_env_specs), reference parity (a step through each view equals a DenoiseEnv step bit for
bit), rows that end at different steps (a stand-in env with DenoiseEnv's public surface),
seeding, bad actions, the optional extra (core install unchanged), example smoke tests.
Small on purpose: 4 envs, 3 steps, 0.25-s segments of a tiny synthetic corpus.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

gymnasium = pytest.importorskip("gymnasium")
pytest.importorskip("torchrl")
pytest.importorskip("stable_baselines3")

from gymnasium.vector import AutoresetMode  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from hear_vec.data import SyntheticCorpus  # noqa: E402
from hear_vec.env import DenoiseEnv  # noqa: E402
from hear_vec.env.spaces import ActionSpec  # noqa: E402
from hear_vec.interop.gymnasium import DenoiseVectorEnv  # noqa: E402
from hear_vec.interop.sb3 import DenoiseSB3VecEnv  # noqa: E402
from hear_vec.interop.torchrl import DenoiseTorchRLEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N = 4
STEPS = 3


@pytest.fixture(scope="module")
def corpus():
    return SyntheticCorpus(num_utterances=8, noise_clips_per_family=1,
                           utterance_seconds=(1.0, 1.0), noise_seconds=1.0, seed=3)


@pytest.fixture()
def kw(corpus):
    return {"data": corpus, "num_envs": N, "max_steps": STEPS, "segment_seconds": 0.25,
            "min_segment_seconds": 0.125, "seed": 11}


def random_actions(count: int, num_methods: int, seed: int = 0) -> list[torch.Tensor]:
    """Valid vector-layout actions: integer method ids as floats, knobs in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        method = torch.randint(0, num_methods, (N, 1), generator=g).float()
        out.append(torch.cat([method, torch.rand(N, 3, generator=g)], 1))
    return out


def direct_run(kw, actions, seed=None):
    env = DenoiseEnv(**kw)
    first = env.reset(seed=seed)
    steps = [env.step(a.clone()) for a in actions]
    return first, steps


# --------------------------------------------------------------------------------------
# spaces and specs
def test_gym_spaces_metadata(kw):
    env = DenoiseVectorEnv(**kw)
    spec = env.env.action_spec
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.render_mode is None
    assert env.single_observation_space.shape == (env.env.observation_dim,)
    assert env.observation_space.shape == (N, env.env.observation_dim)
    box = env.single_action_space
    np.testing.assert_array_equal(box.low, [0.0, *spec.knob_low])
    np.testing.assert_array_equal(box.high, [spec.num_methods - 1, *spec.knob_high])
    assert env.action_space.shape == (N, 4)
    d = DenoiseVectorEnv.wrap(env.env, action_layout="dict")
    assert d.single_action_space["method"].n == spec.num_methods
    assert d.action_space["method"].shape == (N,)
    assert d.action_space["knobs"].shape == (N, 3)


@pytest.mark.parametrize("layout", ["box", "dict"])
def test_gym_outputs_in_spaces_over_episodes(kw, layout):
    env = DenoiseVectorEnv(action_layout=layout, **kw)
    env.action_space.seed(0)
    obs, info = env.reset(seed=0)
    assert info == {}
    assert env.observation_space.contains(obs)
    ended = 0
    for _ in range(3 * STEPS):
        action = env.action_space.sample()
        assert env.action_space.contains(action)
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        for flags in (terminated, truncated):
            assert flags.shape == (N,) and flags.dtype == np.bool_
        assert reward.shape == (N,) and np.isfinite(reward).all()
        done = terminated | truncated
        np.testing.assert_array_equal(info["_final_obs"], done)
        np.testing.assert_array_equal(info["_final_info"], done)
        for i in np.flatnonzero(done):
            assert env.single_observation_space.contains(info["final_obs"][i])
            assert np.isfinite(info["final_info"]["si_sdr"][i])
        for key in ("si_sdr", "si_sdr_start", "method", "knobs", "episode_return"):
            assert info[key].shape[0] == N and info[f"_{key}"].all()
        ended += int(done.sum())
    assert ended == 3 * N  # three full episodes per row, each autoreset on its last step


def test_gym_vector_wrappers_accept_the_view(kw):
    """Gymnasium's own vector wrappers read the declared autoreset mode: episode statistics
    (same-step bookkeeping) match DenoiseEnv's returns; ClipAction maps into the Box."""
    from gymnasium.wrappers.vector import ClipAction, RecordEpisodeStatistics

    env = RecordEpisodeStatistics(ClipAction(DenoiseVectorEnv(**kw)))
    env.reset(seed=0)
    episodes = 0
    for _ in range(2 * STEPS):
        action = np.full((N, 4), 2.0, np.float32)
        action[:, 0] = 9.0  # beyond the Box: ClipAction clamps it to method 4
        _, _, term, trunc, info = env.step(action)
        if (term | trunc).any():
            done = term | trunc
            np.testing.assert_allclose(info["episode"]["r"][done],
                                       info["final_info"]["episode_return"][done], rtol=1e-6)
            np.testing.assert_array_equal(info["episode"]["l"][done], STEPS)
            assert (info["method"] == 4).all()
            episodes += int(done.sum())
    assert episodes == 2 * N


@pytest.mark.parametrize("layout", ["vector", "composite"])
def test_torchrl_check_env_specs(kw, layout):
    env = DenoiseTorchRLEnv(action_layout=layout, **kw)
    assert env.batch_size == torch.Size([N])
    check_env_specs(env, break_when_any_done="both", seed=5)


def test_torchrl_spec_bounds_follow_action_spec(kw):
    env = DenoiseTorchRLEnv(**kw)
    spec = env.denoise_env.action_spec
    torch.testing.assert_close(env.action_spec.space.high[0],
                               torch.tensor([spec.num_methods - 1, *spec.knob_high]))
    comp = DenoiseTorchRLEnv(denoise_env=env.denoise_env, action_layout="composite")
    assert comp.full_action_spec["method"].space.n == spec.num_methods


# --------------------------------------------------------------------------------------
# reference parity: bit for bit against DenoiseEnv
def _assert_same(a, b):
    a = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a.cpu(), b.cpu())


@pytest.mark.parametrize("array_type", ["numpy", "torch"])
@pytest.mark.parametrize("layout", ["box", "dict"])
def test_gym_step_equals_denoise_env(kw, array_type, layout):
    actions = random_actions(2 * STEPS + 1, 5)
    first, ref = direct_run(kw, actions, seed=4)
    env = DenoiseVectorEnv(action_layout=layout, array_type=array_type, **kw)
    obs, _ = env.reset(seed=4)
    _assert_same(obs, first)
    for a, (r_obs, r_rew, r_term, r_trunc, r_info) in zip(actions, ref):
        if layout == "dict":
            a = {"method": a[:, 0].long().numpy(), "knobs": a[:, 1:].numpy()}
        elif array_type == "numpy":
            a = a.numpy()
        obs, rew, term, trunc, info = env.step(a)
        for got, want in ((obs, r_obs), (rew, r_rew), (term, r_term), (trunc, r_trunc),
                          (info["final_obs"], r_info["final_observation"]),
                          (info["si_sdr"], r_info["si_sdr"])):
            _assert_same(got, want)


def test_gym_torch_mode_returns_env_tensors_without_copy(kw):
    """array_type="torch" hands back DenoiseEnv's own tensors (same storage, same device)."""
    seen = {}

    class Spy(DenoiseEnv):
        def step(self, action):
            out = super().step(action)
            seen["obs"], seen["reward"] = out[0], out[1]
            return out

    spy = Spy(**kw)
    env = DenoiseVectorEnv.wrap(spy, array_type="torch")
    env.reset(seed=0)
    obs, reward, *_ = env.step(torch.zeros(N, 4))
    assert obs is seen["obs"] and reward is seen["reward"]
    assert obs.device == spy.device


def test_sb3_step_equals_denoise_env(kw):
    actions = random_actions(2 * STEPS, 5, seed=1)
    first, ref = direct_run(kw, actions, seed=9)
    venv = DenoiseSB3VecEnv(**kw)
    venv.seed(9)
    _assert_same(venv.reset(), first)
    for a, (r_obs, r_rew, r_term, r_trunc, r_info) in zip(actions, ref):
        venv.step_async(a.numpy())
        obs, rew, dones, infos = venv.step_wait()
        _assert_same(obs, r_obs)
        _assert_same(rew, r_rew)
        _assert_same(dones, r_term | r_trunc)
        assert len(infos) == N
        for i, row in enumerate(infos):
            assert row["TimeLimit.truncated"] is False
            if dones[i]:
                _assert_same(row["terminal_observation"], r_info["final_observation"][i])
            else:
                assert "terminal_observation" not in row
    assert dones.all()  # the last step ended every episode (fixed-length episodes)


@pytest.mark.parametrize("layout", ["vector", "composite"])
def test_torchrl_rollout_equals_denoise_env(kw, layout):
    """rollout(break_when_any_done=False) through the view = DenoiseEnv stepped directly:
    ("next", "observation") is the true last observation where an episode ends, and the next
    root observation is DenoiseEnv's post-autoreset one (no second draw)."""
    actions = random_actions(2 * STEPS + 1, 5, seed=2)
    first, ref = direct_run(kw, actions, seed=6)
    env = DenoiseTorchRLEnv(action_layout=layout, **kw)
    env.set_seed(6)
    it = iter(actions)

    def policy(td):
        a = next(it)
        if layout == "vector":
            td.set("action", a)
        else:
            td.set("method", a[:, 0].long())
            td.set("knobs", a[:, 1:])
        return td

    data = env.rollout(len(actions), policy, break_when_any_done=False)
    assert data.batch_size == torch.Size([N, len(actions)])
    _assert_same(data["observation"][:, 0], first)
    for t, (r_obs, r_rew, r_term, _, r_info) in enumerate(ref):
        done = r_term
        _assert_same(data["next", "reward"][:, t, 0], r_rew)
        _assert_same(data["next", "terminated"][:, t, 0], r_term)
        want_next = torch.where(done.unsqueeze(-1), r_info["final_observation"], r_obs)
        _assert_same(data["next", "observation"][:, t], want_next)
        if t + 1 < len(actions):
            _assert_same(data["observation"][:, t + 1], r_obs)
    assert bool(data["next", "done"].any())


def test_views_with_the_stop_action_equal_denoise_env(kw):
    """DenoiseEnv(stop_action=True): M = len(METHODS) + 1 read from action_spec, rows end at
    different steps; the Gymnasium (dict layout) and TorchRL (vector layout) views still
    step exactly as DenoiseEnv and mark exactly the rows that ended."""
    kw = dict(kw, stop_action=True)
    probe = DenoiseEnv(**kw)
    m = probe.action_spec.num_methods
    assert m == len(probe.methods) + 1
    actions = random_actions(4 * STEPS, m, seed=5)
    first, ref = direct_run(kw, actions, seed=3)
    ended = torch.stack([r[2] | r[3] for r in ref])
    assert bool((ended.any(1) & ~ended.all(1)).any())  # some step ends only some rows

    gym = DenoiseVectorEnv(action_layout="dict", **kw)
    assert gym.single_action_space["method"].n == m
    obs, _ = gym.reset(seed=3)
    _assert_same(obs, first)
    for a, (r_obs, r_rew, r_term, r_trunc, r_info) in zip(actions, ref):
        obs, rew, term, trunc, info = gym.step({"method": a[:, 0].long().numpy(),
                                                "knobs": a[:, 1:].numpy()})
        _assert_same(obs, r_obs)
        _assert_same(rew, r_rew)
        np.testing.assert_array_equal(info["_final_obs"], (r_term | r_trunc).numpy())
        done = info["_final_obs"]
        _assert_same(info["final_obs"][done], r_info["final_observation"][torch.from_numpy(done)])

    trl = DenoiseTorchRLEnv(**kw)
    assert float(trl.action_spec.space.high[0, 0]) == m - 1
    trl.set_seed(3)
    it = iter(actions)
    data = trl.rollout(len(actions), lambda td: td.set("action", next(it)),
                       break_when_any_done=False)
    for t, (r_obs, r_rew, r_term, r_trunc, r_info) in enumerate(ref):
        done = r_term | r_trunc
        _assert_same(data["next", "done"][:, t, 0], done)
        _assert_same(data["next", "reward"][:, t, 0], r_rew)
        want = torch.where(done.unsqueeze(-1), r_info["final_observation"], r_obs)
        _assert_same(data["next", "observation"][:, t], want)
        if t + 1 < len(actions):
            _assert_same(data["observation"][:, t + 1], r_obs)


# --------------------------------------------------------------------------------------
# rows that end at different steps (as with a stop/keep action)
class StaggeredEnv:
    """DenoiseEnv's public surface; row i's episodes last 1 + i % 3 steps. Observation: the
    row's episode counter and step within it, so resets are visible."""

    def __init__(self, num_envs: int = N, dim: int = 6):
        self.num_envs, self.observation_dim, self.device = num_envs, dim, torch.device("cpu")
        self.action_spec = ActionSpec(6, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.max_steps = 3
        self.length = 1 + torch.arange(num_envs) % 3

    def _obs(self):
        o = torch.zeros(self.num_envs, self.observation_dim)
        o[:, 0], o[:, 1] = self.episode.float(), self.t.float()
        return o

    def reset(self, draws=None, seed=None):
        self.episode = torch.zeros(self.num_envs, dtype=torch.long)
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        return self._obs()

    def step(self, action):
        assert action.shape == (self.num_envs, 4)
        self.t = self.t + 1
        terminated = self.t >= self.length
        final = self._obs()
        self.episode = self.episode + terminated.long()
        self.t = torch.where(terminated, 0, self.t)
        reward = action[:, 0]
        info = {"final_observation": final, "si_sdr": torch.zeros(self.num_envs),
                "si_sdr_start": torch.zeros(self.num_envs)}
        return self._obs(), reward, terminated, torch.zeros_like(terminated), info

    def episode_stats(self, reset=True):
        return {}


def test_gym_rows_ending_at_different_steps():
    env = DenoiseVectorEnv.wrap(StaggeredEnv())
    env.reset(seed=0)
    for step in range(1, 7):
        obs, _, term, _, info = env.step(np.zeros((N, 4), np.float32))
        want_done = (step % (1 + np.arange(N) % 3)) == 0
        np.testing.assert_array_equal(term, want_done)
        np.testing.assert_array_equal(info["_final_obs"], want_done)
        for i in np.flatnonzero(want_done):  # last observation of the ended episode
            assert info["final_obs"][i, 1] == 1 + i % 3 and obs[i, 1] == 0


def test_torchrl_rows_ending_at_different_steps():
    env = DenoiseTorchRLEnv(denoise_env=StaggeredEnv())
    data = env.rollout(6, break_when_any_done=False)
    lengths = 1 + torch.arange(N) % 3
    for t in range(6):
        done = (t + 1) % lengths == 0
        assert torch.equal(data["next", "done"][:, t, 0], done)
        nxt = data["next", "observation"][:, t]
        # the ended episode's last step, never NaN, then the next episode's first observation
        assert torch.equal(nxt[done, 1], lengths[done].float())
        if t + 1 < 6:
            root = data["observation"][:, t + 1]
            assert torch.equal(root[done, 1], torch.zeros(int(done.sum())))
            assert torch.equal(root[~done], nxt[~done])
    assert not torch.isnan(data["next", "observation"]).any()


def test_torchrl_partial_reset_of_running_rows_is_an_error():
    env = DenoiseTorchRLEnv(denoise_env=StaggeredEnv())
    td = env.reset()
    td = env.rand_step(td)
    from torchrl.envs.utils import step_mdp
    td = step_mdp(td)
    td.set("_reset", torch.tensor([False, True, False, False]).unsqueeze(-1))  # row 1 runs on
    with pytest.raises(ValueError, match="only reset rows whose episode just ended"):
        env.reset(td)


# --------------------------------------------------------------------------------------
# seeding
def _gym_trajectory(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        o, r, *_ = env.step(a.numpy())
        out += [o, r]
    return out


def test_gym_seed_reproduces_episodes(kw):
    actions = random_actions(2 * STEPS, 5, seed=3)
    env = DenoiseVectorEnv(**kw)
    a = _gym_trajectory(env, 21, actions)
    b = _gym_trajectory(DenoiseVectorEnv(**kw), 21, actions)
    c = _gym_trajectory(env, 22, actions)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])  # another seed: other segments, other rewards
    again = _gym_trajectory(env, 21, actions)  # same instance: same segments, same rewards
    for x, y in zip(a[2::2], again[2::2]):
        np.testing.assert_array_equal(x, y)
    assert env.np_random_seed == 21  # Gymnasium's own generator is seeded too


def test_torchrl_set_seed_reproduces_episodes(kw):
    def run(env, seed):
        env.set_seed(seed)
        torch.manual_seed(0)  # rand_action's samples
        return env.rollout(2 * STEPS, break_when_any_done=False)

    first = DenoiseTorchRLEnv(**kw)
    a, b = run(first, 5), run(DenoiseTorchRLEnv(**kw), 5)
    for key in ("observation", ("next", "observation"), ("next", "reward"), "action"):
        assert torch.equal(a[key], b[key])
    # the same instance re-seeded replays the same segments: same rewards for the same
    # actions (observations differ only through the running normalizer, which kept learning)
    assert torch.equal(run(first, 5)["next", "reward"], a["next", "reward"])
    assert not torch.equal(run(first, 6)["next", "reward"], a["next", "reward"])


# --------------------------------------------------------------------------------------
# bad actions
def _ok():
    return np.array([[1.0, 0.5, 0.5, 0.5]] * N, np.float32)


def _with(row, col, value):
    a = _ok()
    a[row, col] = value
    return a


BAD_BOX = {
    "shape": (np.zeros((N, 3), np.float32), "must have shape"),
    "rows": (np.zeros((N + 1, 4), np.float32), "must have shape"),
    "nan": (_with(2, 1, np.nan), "must be finite: row 2, column 1"),
    "inf": (_with(0, 0, np.inf), "must be finite: row 0, column 0"),
    "knob_high": (_with(1, 3, 1.5), "out of bounds: row 1, column 3"),
    "knob_low": (_with(3, 2, -0.1), "out of bounds: row 3, column 2"),
    "method_high": (_with(0, 0, 5.0), "out of bounds: row 0, column 0"),
    "method_low": (_with(0, 0, -1.0), "out of bounds: row 0, column 0"),
    "bool": (np.ones((N, 4), bool), "real numbers"),
    "complex": (np.ones((N, 4), np.complex64), "real numbers"),
    "strings": ([["a", "b", "c", "d"]] * N, "real numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_BOX))
def test_gym_bad_box_action_is_a_clear_error(kw, case):
    action, message = BAD_BOX[case]
    env = DenoiseVectorEnv(**kw)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message) as err:
        env.step(action)
    assert "\n" not in str(err.value)
    env.step(_ok())  # the env is still usable


def _td(**entries):
    from tensordict import TensorDict
    return TensorDict(entries, batch_size=[N])


@pytest.mark.parametrize("case", ["nan", "inf", "knob_high", "method_high", "shape", "bool"])
def test_torchrl_bad_vector_action_is_a_clear_error(kw, case):
    action, message = BAD_BOX[case]
    env = DenoiseTorchRLEnv(**kw)
    td = env.reset()
    with pytest.raises(ValueError, match=message) as err:
        env.step(_td(observation=td["observation"], action=torch.as_tensor(action)))
    assert "\n" not in str(err.value)


BAD_DICT = {
    "non_integer": ({"method": np.full(N, 1.5), "knobs": _ok()[:, 1:]}, "integer method id"),
    "method_range": ({"method": np.array([0, 1, 6, 2]), "knobs": _ok()[:, 1:]},
                     "out of range: row 2 is 6"),
    "negative": ({"method": np.array([0, -1, 1, 2]), "knobs": _ok()[:, 1:]},
                 "out of range: row 1 is -1"),
    "knob_nan": ({"method": np.zeros(N, np.int64), "knobs": _with(1, 2, np.nan)[:, 1:]},
                 "must be finite: row 1, column 1"),
    "knob_shape": ({"method": np.zeros(N, np.int64), "knobs": np.zeros((N, 2))},
                   "must have shape"),
    "keys": ({"method": np.zeros(N, np.int64)}, "keys 'method' and 'knobs'"),
    "not_dict": (_ok(), "must be a dict"),
}


@pytest.mark.parametrize("case", sorted(BAD_DICT))
def test_gym_bad_dict_action_is_a_clear_error(kw, case):
    action, message = BAD_DICT[case]
    env = DenoiseVectorEnv(action_layout="dict", **kw)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message) as err:
        env.step(action)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method, message", [
    (torch.tensor([0, 1, 9, 3]), "out of range: row 2 is 9"),
    (torch.tensor([0.0, 1.5, 2.0, 3.0]), "integer method id: row 1 is 1.5"),
])
def test_torchrl_bad_composite_method_is_a_clear_error(kw, method, message):
    env = DenoiseTorchRLEnv(action_layout="composite", **kw)
    td = env.reset()
    knobs = torch.full((N, 3), 0.5)
    env.step(_td(observation=td["observation"], method=torch.tensor([0, 1, 2, 3]), knobs=knobs))
    with pytest.raises(ValueError, match=message):
        env.step(_td(observation=td["observation"], method=method, knobs=knobs))


def test_non_integer_box_method_is_rounded_as_the_env_does(kw):
    """In the Box layout the method coordinate is the seed's relaxation: 1.4 is in the space
    and acts as method 1, exactly as DenoiseEnv itself treats it."""
    action = torch.tensor([[1.4, 0.2, 0.3, 0.4], [2.6, 0.5, 0.5, 0.5],
                           [0.0, 1.0, 0.0, 1.0], [3.5, 0.7, 0.1, 0.9]])
    _, ref = direct_run(kw, [action], seed=1)
    env = DenoiseVectorEnv(**kw)
    env.reset(seed=1)
    assert env.single_action_space.contains(action[0].numpy())
    obs, rew, *_ = env.step(action.numpy())
    _assert_same(obs, ref[0][0])
    _assert_same(rew, ref[0][1])


def test_clip_actions_clamps_into_the_space(kw):
    action = torch.tensor([[7.0, 1.5, -0.5, 0.5]] * N)
    clipped = torch.tensor([[4.0, 1.0, 0.0, 0.5]] * N)
    _, ref = direct_run(kw, [clipped], seed=2)
    env = DenoiseVectorEnv(clip_actions=True, **kw)
    env.reset(seed=2)
    obs, rew, *_ = env.step(action.numpy())
    _assert_same(obs, ref[0][0])
    _assert_same(rew, ref[0][1])
    with pytest.raises(ValueError, match="must be finite"):  # NaN is never clipped
        env.step(_with(0, 1, np.nan))


def test_bad_constructor_and_reset_arguments(kw):
    with pytest.raises(ValueError, match="action_layout"):
        DenoiseVectorEnv(action_layout="tuple", **kw)
    with pytest.raises(ValueError, match="array_type"):
        DenoiseVectorEnv(array_type="jax", **kw)
    with pytest.raises(ValueError, match="action_layout"):
        DenoiseTorchRLEnv(action_layout="dict", **kw)
    env = DenoiseVectorEnv(**kw)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(_ok())
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"reset_mask": np.ones(N, bool)})
    with pytest.raises(TypeError):
        DenoiseVectorEnv(no_such_argument=1, **kw)  # DenoiseEnv's own argument check


def test_defaults_are_denoise_envs(corpus):
    """No arguments: DenoiseEnv's defaults (synthetic data, its num_envs, its device)."""
    import inspect
    defaults = {k: p.default for k, p in inspect.signature(DenoiseEnv).parameters.items()}
    env = DenoiseVectorEnv()
    assert env.num_envs == defaults["num_envs"] and env.env.max_steps == defaults["max_steps"]
    assert env.device == torch.device(defaults["device"])
    assert env.env.corpus.source.startswith("synthetic")
    assert DenoiseTorchRLEnv(corpus).batch_size == torch.Size([defaults["num_envs"]])


# --------------------------------------------------------------------------------------
# the optional extra and the examples
def _run(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_core_install_does_not_import_the_interop_libraries():
    code = ("import sys, hear_vec, hear_vec.env, hear_vec.interop, hear_vec.interop.actions, "
            "hear_vec.interop.evaluation\n"
            "from hear_vec.env import DenoiseEnv\n"
            "bad = [m for m in ('gymnasium', 'torchrl', 'tensordict', 'stable_baselines3') "
            "if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = _run(["-c", code])
    assert result.returncode == 0, result.stderr[-2000:]
    setup = (ROOT / "setup.py").read_text()
    core = setup.split("install_requires=[", 1)[1].split("]", 1)[0]
    for name in ("gymnasium", "torchrl", "tensordict", "stable-baselines3"):
        assert name not in core
    extra = setup.split('"interop": [', 1)[1].split("]", 1)[0]
    for name in ("gymnasium==", "torchrl==", "tensordict==", "stable-baselines3=="):
        assert name in extra  # pinned to what was tested


@pytest.mark.parametrize("script", ["examples/sb3_ppo.py", "examples/torchrl_ppo.py"])
def test_example_smoke(script, tmp_path):
    out = tmp_path / "result.json"
    result = _run([script, "--tiny", "--num-envs", "4", "--total-steps", "128",
                   "--eval-episodes", "8", "--json", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    import json
    data = json.loads(out.read_text())
    assert data["transitions"] >= 128
    assert np.isfinite(data["eval"]["return"]) and np.isfinite(data["eval"]["si_sdr_gain"])
    assert data["eval"]["episodes"] == 8
