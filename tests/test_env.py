"""DenoiseEnv guarantees: reward definition (telescoping, diversity, quality schedule),
episode boundaries and autoreset, determinism, lengths, finiteness, compile."""

from __future__ import annotations

import copy

import pytest
import torch

from hear_vec import rng
from hear_vec.data import Segments, SyntheticCorpus
from hear_vec.env import DenoiseEnv
from hear_vec.features import NUM_FEATURES
from hear_vec.metrics import stoi
from hear_vec.ops import METHODS


@pytest.fixture(scope="module")
def corpus():
    return SyntheticCorpus(num_utterances=12, utterance_seconds=(1.5, 2.5),
                           noise_clips_per_family=1, noise_seconds=2.0, seed=3)


def make_env(corpus, **kw):
    kw.setdefault("num_envs", 6)
    kw.setdefault("segment_seconds", 1.25)
    kw.setdefault("min_segment_seconds", 0.75)
    return DenoiseEnv(corpus, **kw)


def random_actions(n: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        a = torch.rand(n, 4, generator=g)
        a[:, 0] = torch.randint(0, len(METHODS), (n,), generator=g).float()
        out.append(a)
    return out


# ------------------------------------------------------------------------- reward definition
def test_si_sdr_rewards_telescope_to_final_minus_start(corpus):
    env = make_env(corpus, max_steps=3, reward_scale=5.0)
    env.reset()
    start = env.state.si_sdr_start.clone()
    total = torch.zeros(env.num_envs)
    for action in random_actions(env.num_envs, 3):
        _, reward, terminated, _, info = env.step(action)
        total += reward
    assert terminated.all()
    final = info["si_sdr"]
    torch.testing.assert_close(total * 5.0, final - start, rtol=0, atol=1e-4)
    torch.testing.assert_close(info["si_sdr_start"], start)


@pytest.mark.parametrize("stop_action", [False, True])
def test_worse_penalty_weights_a_final_loss_only(corpus, stop_action):
    # the same episodes with and without the penalty: rewards differ only on the step that
    # ends an episode, by -w max(0, start - final) / scale; a row that stops at once has a
    # final SI-SDR equal to its input's and is never penalized
    w, scale = 1.5, 5.0
    plain = make_env(corpus, max_steps=3, reward_scale=scale, seed=2, stop_action=stop_action)
    pen = make_env(corpus, max_steps=3, reward_scale=scale, seed=2, stop_action=stop_action,
                   worse_penalty=w)
    plain.reset()
    pen.reset()
    start = plain.state.si_sdr_start.clone()
    actions = random_actions(plain.num_envs, 3, seed=4)
    for a in actions:
        a[:, 1] = 1.0  # full strength: some rows end below their input
    if stop_action:
        actions[0][0, 0] = float(len(METHODS))  # row 0 stops at the first step
    seen_loss = False
    for t, action in enumerate(actions):
        _, r_plain, term, _, info = plain.step(action)
        _, r_pen, term_pen, _, _ = pen.step(action)
        assert torch.equal(term, term_pen)
        loss = (start - info["si_sdr"]).clamp_min(0.0)
        want = torch.where(term, -w * loss / scale, torch.zeros_like(loss))
        torch.testing.assert_close(r_pen - r_plain, want, rtol=0, atol=1e-5)
        seen_loss |= bool((term & (loss > 0)).any())
        if stop_action and t == 0:
            assert term[0] and r_pen[0] == 0.0  # stopped at once: the identity, no penalty
        start = torch.where(term, plain.state.si_sdr_start, start)  # autoreset rows
    assert seen_loss, "the episodes must include a final loss for the test to mean anything"


def test_diversity_term_on_hand_built_actions(corpus):
    w = 0.4
    plain = make_env(corpus, max_steps=3, diversity_weight=0.0, seed=5)
    div = make_env(corpus, max_steps=3, diversity_weight=w, seed=5)
    plain.reset()
    div.reset()
    # row 0: 0,0,0 (repeat, repeat); row 1: 0,1,2 (change, change); others: 1,1,3
    methods = torch.tensor([[0, 0, 0], [0, 1, 2]] + [[1, 1, 3]] * (plain.num_envs - 2))
    expected = torch.tensor([[0.0, -w / 2, -w / 2], [0.0, w, w]] + [[0.0, -w / 2, w]] * 4)
    for t in range(3):
        action = torch.full((plain.num_envs, 4), 0.3)
        action[:, 0] = methods[:, t].float()
        _, r_plain, _, _, _ = plain.step(action)
        _, r_div, _, _, _ = div.step(action)
        torch.testing.assert_close(r_div - r_plain, expected[:, t], rtol=0, atol=1e-5)


@pytest.mark.parametrize("interval,measured_steps", [(0, {3}), (1, {1, 2, 3}), (2, {2, 3})])
def test_quality_interval_schedule(corpus, interval, measured_steps):
    env = make_env(corpus, num_envs=3, max_steps=3, stoi_weight=2.0, quality_interval=interval)
    env.reset()
    clean, lengths = env.state.clean.clone(), env.state.lengths.clone()
    previous = stoi(clean, env.state.noisy, 16000, lengths)
    for t, action in enumerate(random_actions(3, 3, seed=1), start=1):
        si_before = env.state.si_sdr.clone()
        _, reward, _, _, info = env.step(action)
        current = env.state.current if t < 3 else None
        si_part = (info["si_sdr"] - si_before) / env.reward_scale
        if t in measured_steps:
            value = info["stoi"]
            if current is not None:
                torch.testing.assert_close(value, stoi(clean, current, 16000, lengths))
            torch.testing.assert_close(reward - si_part, 2.0 * (value - previous),
                                       rtol=0, atol=1e-5)
            previous = value
        else:
            assert torch.isnan(info["stoi"]).all() if "stoi" in info else True
            torch.testing.assert_close(reward, si_part, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ episodes and autoreset
def test_episodes_end_after_exactly_max_steps(corpus):
    env = make_env(corpus, max_steps=4)
    env.reset()
    for t, action in enumerate(random_actions(env.num_envs, 12), start=1):
        _, _, terminated, truncated, _ = env.step(action)
        assert bool(terminated.all()) == (t % 4 == 0)
        assert not bool(terminated.any()) or t % 4 == 0
        assert not truncated.any()


def test_autoreset_draws_new_segments_and_keeps_final_observation(corpus):
    env = make_env(corpus, max_steps=2)
    env.reset()
    actions = random_actions(env.num_envs, 2)
    env.step(actions[0])
    before = env.state
    obs, _, terminated, _, info = env.step(actions[1])
    assert terminated.all()
    after = env.state
    # new segments in every finished row, fresh episode bookkeeping
    assert not torch.equal(after.noisy, before.noisy)
    assert (after.step == 0).all() and (after.prev_method == -1).all()
    torch.testing.assert_close(after.current, after.noisy)
    # final_observation = the observation of the audio after the last step (pre-reset):
    # its "current features" block differs from the returned (post-reset) observation
    final = info["final_observation"]
    assert final.shape == obs.shape
    assert not torch.allclose(final, obs)
    step_fraction = final[:, -1]
    torch.testing.assert_close(step_fraction, torch.ones(env.num_envs))
    torch.testing.assert_close(obs[:, -1], torch.zeros(env.num_envs))
    # the one-hot of the last method in the final observation
    onehot = final[:, 2 * NUM_FEATURES: 2 * NUM_FEATURES + len(METHODS)]
    torch.testing.assert_close(onehot.argmax(-1), actions[1][:, 0].long())


# ----------------------------------------------------------------------------- determinism
def rollout(corpus, seed: int, steps: int = 6):
    env = make_env(corpus, max_steps=3, seed=seed)
    obs = [env.reset()]
    rewards = []
    for action in random_actions(env.num_envs, steps):
        o, r, _, _, _ = env.step(action)
        obs.append(o)
        rewards.append(r)
    return torch.stack(obs), torch.stack(rewards)


def test_same_seed_same_trajectory_other_seed_differs(corpus):
    obs_a, rew_a = rollout(corpus, seed=11)
    obs_b, rew_b = rollout(corpus, seed=11)
    obs_c, rew_c = rollout(corpus, seed=12)
    assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)
    assert not torch.allclose(rew_a, rew_c)


# ------------------------------------------------------------------------ lengths, silence
def test_padded_row_behaves_like_unpadded_self(corpus):
    seg = corpus.draw(rng.make_key(4), 2, 16000, 16000)
    length = 11111
    clean, noisy = seg.clean[:, :length].clone(), seg.noisy[:, :length].clone()

    def segments(total):
        pad = total - length
        return Segments(clean=torch.nn.functional.pad(clean, (0, pad)),
                        noisy=torch.nn.functional.pad(noisy, (0, pad)),
                        lengths=torch.tensor([length, length]),
                        snr_db=torch.zeros(2), utterance=torch.zeros(2, dtype=torch.long))

    results = []
    for total in (length, 16000):
        env = make_env(corpus, num_envs=2, max_steps=2, stoi_weight=1.0, estoi_weight=1.0,
                       segment_seconds=total / 16000, min_segment_seconds=0.5)
        obs0 = env.start_from(segments(total))
        rewards = [env.step(a)[1] for a in random_actions(2, 2, seed=3)]
        results.append((obs0, torch.stack(rewards), env.state.stats.clone()))
    (obs_a, rew_a, stats_a), (obs_b, rew_b, stats_b) = results
    torch.testing.assert_close(rew_a, rew_b, rtol=1e-4, atol=1e-4)
    # normalizer saw the same rows -> same normalized observation
    torch.testing.assert_close(obs_a, obs_b, rtol=1e-4, atol=1e-4)


def test_silent_clean_segments_give_finite_rewards(corpus):
    env = make_env(corpus, num_envs=3, max_steps=2, stoi_weight=1.0, estoi_weight=1.0)
    length = env.segment_samples
    clean = torch.zeros(3, length)
    noisy = 0.01 * torch.randn(3, length)
    noisy[2] = 0.0  # silent input too
    seg = Segments(clean=clean, noisy=noisy, lengths=torch.full((3,), length),
                   snr_db=torch.zeros(3), utterance=torch.zeros(3, dtype=torch.long))
    obs = env.start_from(seg)
    assert torch.isfinite(obs).all()
    for action in random_actions(3, 2):
        obs, reward, _, _, info = env.step(action)
        assert torch.isfinite(reward).all() and torch.isfinite(obs).all()
        assert torch.isfinite(info["final_observation"]).all()


def test_episode_statistics_accumulate_on_device(corpus):
    env = make_env(corpus, max_steps=2)
    env.reset()
    returns = []
    for t, action in enumerate(random_actions(env.num_envs, 4), start=1):
        _, _, terminated, _, info = env.step(action)
        if t % 2 == 0:
            returns.append(info["episode_return"])
    stats = env.episode_stats()
    assert stats["episodes"] == 2 * env.num_envs
    assert stats["return"] == pytest.approx(torch.cat(returns).mean().item(), abs=1e-5)
    assert env.episode_stats()["episodes"] == 0


# ------------------------------------------------------------------------------ checkpoints
def _every_tensor(state) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in vars(state).items():
        if isinstance(value, torch.Tensor):
            out[name] = value
        elif isinstance(value, tuple):  # the NamedTuple references
            out.update({f"{name}.{k}": v for k, v in value._asdict().items()
                        if isinstance(v, torch.Tensor)})
    return out


@pytest.mark.parametrize("stoi_weight", [0.0, 1.0])
def test_state_dict_leaves_out_derived_fields_and_load_rebuilds_them_bit_for_bit(corpus,
                                                                                 stoi_weight):
    # mid-run state with rows at different steps (stop action, autoresets): the checkpoint
    # holds no STFT / references, and the loaded env's state equals the original in every
    # tensor (the recomputed STFT, SI-SDR and STOI references included) and steps on equally
    kw = dict(num_envs=5, max_steps=3, stop_action=True, stoi_weight=stoi_weight,
              estoi_weight=stoi_weight, floor_features=True, seed=6)
    env = make_env(corpus, **kw)
    env.reset()
    actions = random_actions(5, 6, seed=8)
    for i, a in enumerate(actions[:4]):
        a[i % 5, 0] = float(len(METHODS))  # one row stops at each step
        env.step(a)
    saved = env.state_dict()
    assert not {"spec", "power", "si_ref", "quality"} & set(saved["state"])
    # the observation normalizer is saved apart (normalizer.export()); a copy stands in here
    other = make_env(corpus, normalizer=copy.deepcopy(env.normalizer), **kw)
    other.load_state_dict(saved)
    want, got = _every_tensor(env.state), _every_tensor(other.state)
    assert set(want) == set(got) and "spec" in got
    for name in want:
        assert torch.equal(want[name], got[name]), name
    old_format = copy.deepcopy(saved)  # checkpoints written before the compact format
    old_format["state"].update(spec=env.state.spec.clone(), power=env.state.power.clone())
    old_format["state"]["si_ref"] = env.state.si_ref._asdict()
    old_format["state"]["quality"] = (None if env.state.quality is None else
                                      env.state.quality._asdict())
    third = make_env(corpus, **kw)
    third.load_state_dict(old_format)
    assert all(torch.equal(v, _every_tensor(third.state)[k]) for k, v in want.items())
    for a in actions[4:]:
        out_a, out_b = env.step(a), other.step(a)
        for x, y in zip(out_a[:4], out_b[:4]):
            assert torch.equal(x, y)


def test_state_dict_size_is_the_three_audio_signals(corpus):
    # clean, noisy, current (float32, T samples each) plus per-row counters and features:
    # the STFT (~2.3x the audio) and the references are not in it
    import io

    env = make_env(corpus, num_envs=4, stoi_weight=1.0, floor_features=True)
    env.reset()
    buf = io.BytesIO()
    torch.save(env.state_dict(), buf)
    audio_bytes = 3 * 4 * env.segment_samples * env.num_envs
    assert audio_bytes < buf.tell() < 1.1 * audio_bytes + 16384


# ------------------------------------------------------------------------------- bad input
def test_bad_arguments_raise_clear_errors(corpus):
    with pytest.raises(ValueError, match="num_envs"):
        DenoiseEnv(corpus, num_envs=0)
    with pytest.raises(ValueError, match="max_steps"):
        DenoiseEnv(corpus, max_steps=0)
    env = make_env(corpus)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(env.num_envs, 4))
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(env.num_envs, 3))


# ---------------------------------------------------------------------------------- compile
def test_step_compiles_fullgraph_and_matches_eager(corpus):
    torch._dynamo.reset()
    kw = dict(num_envs=2, max_steps=2, stoi_weight=1.0, segment_seconds=0.75,
              min_segment_seconds=0.5, seed=2)
    eager = make_env(corpus, **kw)
    # aot_eager: the same dynamo capture (fullgraph: any host sync or data-dependent branch
    # fails it) and AOT functionalization, without inductor's minutes of CPU code generation
    compiled = make_env(corpus, compile=True, compile_backend="aot_eager", **kw)
    torch.testing.assert_close(compiled.reset(), eager.reset(), rtol=1e-4, atol=1e-4)
    for action in random_actions(2, 2, seed=4):
        out_c = compiled.step(action)
        out_e = eager.step(action)
        torch.testing.assert_close(out_c[1], out_e[1], rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(out_c[0], out_e[0], rtol=1e-3, atol=1e-3)
