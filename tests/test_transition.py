"""The one transition (hear_vec.env.transition): per-row episode clocks and the stop action,
autoreset as a masked select, the shared-clock fast path, inference = training observations,
the vector layouts, and the layering of hear_vec.env."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from hear_vec import rng
from hear_vec.data import Segments, SyntheticCorpus
from hear_vec.env import DenoiseEnv, transition
from hear_vec.env.transition import STOP, EnvParams
from hear_vec.inference import DenoisingAgent
from hear_vec.ops import METHODS


@pytest.fixture(scope="module")
def corpus():
    return SyntheticCorpus(num_utterances=10, utterance_seconds=(1.0, 1.5),
                           noise_clips_per_family=1, noise_seconds=1.5, seed=5)


def params_of(corpus, **kw) -> EnvParams:
    kw.setdefault("num_envs", 4)
    kw.setdefault("segment_samples", 12000)
    kw.setdefault("min_samples", 8000)
    return EnvParams(corpus=corpus, **kw)


def actions(n: int, steps: int, seed: int = 0, num_ids: int = len(METHODS)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        a = torch.rand(n, 4, generator=g)
        a[:, 0] = torch.randint(0, num_ids, (n,), generator=g).float()
        out.append(a)
    return out


def state_equal_rows(a, b, rows: torch.Tensor) -> bool:
    """Every per-row tensor field of two states equal on ``rows``."""
    for f in dataclasses.fields(a):
        if f.name in a.UNBATCHED:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x is None:
            continue
        pairs = zip(x, y) if isinstance(x, tuple) else [(x, y)]
        for u, v in pairs:
            if not torch.equal(u[rows], v[rows]):
                return False
    return True


# ---------------------------------------------------------------- per-row episode lengths
def test_rows_finish_at_different_steps_and_autoreset_touches_only_them(corpus):
    params = params_of(corpus, stop_action=True, max_steps=3)
    plain = dataclasses.replace(params, autoreset=False)
    key = rng.make_key(9)
    state = transition.reset(params, key)
    untouched = transition.reset(plain, key)  # the same episodes, never reset
    a = torch.tensor([[0, 0.5, 0.5, 0.5]]).repeat(4, 1)
    a[1, 0] = a[3, 0] = STOP  # rows 1 and 3 stop now, rows 0 and 2 go on
    state, _, _, term, _, info = transition.step(params, state, a)
    untouched, *_ = transition.step(plain, untouched, a)
    assert term.tolist() == [False, True, False, True]
    assert info["step"].tolist() == [1, 1, 1, 1]
    going = torch.tensor([0, 2])
    # the rows that did not finish are bit-identical to the run without reset ...
    assert state_equal_rows(state, untouched, going)
    # ... the finished ones hold a fresh episode (step 0, new audio)
    assert state.step[[1, 3]].tolist() == [0, 0]
    assert not torch.equal(state.noisy[[1, 3]], untouched.noisy[[1, 3]])
    # the stopped rows kept their audio: final SI-SDR = start SI-SDR, reward 0
    torch.testing.assert_close(info["si_sdr"][[1, 3]], info["si_sdr_start"][[1, 3]])
    # second step: rows 0 and 2 denoise on; row 0 stops at step 2, row 2 runs to max_steps
    b = a.clone()
    b[:, 0] = torch.tensor([STOP, 1, 1, 2])
    state, _, _, term, _, info = transition.step(params, state, b)
    untouched, *_ = transition.step(plain, untouched, b)
    assert term.tolist() == [True, False, False, False]
    assert state_equal_rows(state, untouched, torch.tensor([2]))
    state, _, _, term, _, info = transition.step(params, state, b)
    assert term.tolist() == [True, False, True, False] and info["step"].tolist() == [1, 2, 3, 2]
    # finished: rows 1, 3 (stop at 1), row 0 (stop at 2), row 2 (max_steps), row 0 again
    # (its fresh episode stopped at once)
    sums = dict(zip(transition.EPISODE_STATS, state.stats.tolist()))
    assert sums["episodes"] == 5 and sums["stopped"] == 4
    assert sums["length"] == 1 + 1 + 2 + 3 + 1


def test_stop_action_is_off_by_default_and_its_id_then_clamps(corpus):
    params = params_of(corpus)
    assert params.action_spec.num_methods == len(METHODS)
    assert dataclasses.replace(params, stop_action=True).action_spec.num_methods == STOP + 1
    state = transition.reset(params, rng.make_key(1))
    a = torch.tensor([[STOP, 0.5, 0.5, 0.5]]).repeat(4, 1)
    _, _, _, term, _, info = transition.step(params, state, a)
    assert not term.any() and (info["method"] == len(METHODS) - 1).all()


def test_without_autoreset_finished_rows_stay_put(corpus):
    params = params_of(corpus, stop_action=True, autoreset=False, max_steps=3)
    state = transition.reset(params, rng.make_key(2))
    a = torch.tensor([[STOP, 0, 0, 0], [3, 0.9, 0.5, 0.5], [1, 0.9, 0.5, 0.5],
                      [2, 0.9, 0.5, 0.5]])
    state, _, r1, _, _, _ = transition.step(params, state, a)
    frozen = state.current[0].clone()
    a2 = a.clone()
    a2[0, 0] = 1  # row 0 asks to denoise after it stopped: ignored
    state, _, r2, term, _, _ = transition.step(params, state, a2)
    assert torch.equal(state.current[0], frozen) and r2[0] == 0 and term[0]
    assert state.step.tolist() == [1, 2, 2, 2]


# ------------------------------------------------------------------ shared-clock fast path
def test_shared_clock_fast_path_gives_identical_numbers(corpus):
    params = params_of(corpus, max_steps=2, stoi_weight=1.0, quality_interval=0)
    key = rng.make_key(3)
    fast = slow = transition.reset(params, key)
    for t, a in enumerate(actions(4, 6, seed=1), start=1):
        finish = t % 2 == 0
        fast, obs_f, r_f, term_f, _, info_f = transition.step(
            params, fast, a, may_finish=finish, may_measure=finish)
        slow, obs_s, r_s, term_s, _, info_s = transition.step(params, slow, a)
        assert torch.equal(obs_f, obs_s) and torch.equal(r_f, r_s)
        assert torch.equal(term_f, term_s) and bool(term_f.all()) == finish
        assert state_equal_rows(fast, slow, torch.arange(4))
        assert torch.equal(fast.counter, slow.counter) and torch.equal(fast.stats, slow.stats)


def test_denoise_env_with_stop_action_runs_ragged_episodes(corpus):
    env = DenoiseEnv(corpus, num_envs=4, segment_seconds=0.75, min_segment_seconds=0.5,
                     stop_action=True, seed=4)
    env.reset()
    ids = len(METHODS) + 1
    lengths = []
    for a in actions(4, 9, seed=2, num_ids=ids):
        _, _, term, _, info = env.step(a)
        lengths += info["step"][term].tolist()
    assert min(lengths) == 1 and max(lengths) <= 3 and len(set(lengths)) > 1
    stats = env.episode_stats()
    assert 0 < stats["stopped"] < 1 and stats["episodes"] == len(lengths)


# ------------------------------------------------------- inference sees what training saw
@pytest.mark.parametrize("max_steps,stop,floor", [(3, False, False), (2, False, True),
                                                  (4, True, False)])
def test_denoising_agent_and_env_build_identical_observations(corpus, tmp_path, max_steps,
                                                              stop, floor):
    from tests.model_fixtures import make_model

    path = make_model(tmp_path / "model.pt", seed=1, train_steps=0, stop_action=stop,
                      floor_features=floor)
    agent = DenoisingAgent.from_file(path)
    seg = corpus.draw(rng.make_key(8), 3, 12000, 8000)
    result = agent.run(seg.noisy, seg.lengths, max_steps=max_steps, trace=True)
    env = DenoiseEnv(corpus, num_envs=3, segment_seconds=0.75, min_segment_seconds=0.5,
                     max_steps=max_steps, stop_action=stop, floor_features=floor,
                     normalizer=agent.normalizer, update_normalizer=False)
    obs = env.start_from(seg)
    rollout = result.rollout
    alive = torch.ones(3, dtype=torch.bool)  # rows whose episode is still on in the env
    for t in range(len(rollout.observations)):
        assert torch.equal(obs[alive], rollout.observations[t][alive]), f"obs of step {t}"
        action = agent.policy(obs, True)
        before = env.state.current
        obs, _, term, _, info = env.step(action)
        after = torch.where(term.unsqueeze(-1), before, env.state.current)
        stopped = info["stop"]
        kept = torch.where(stopped.unsqueeze(-1), before, after)  # a stop keeps the audio
        if t + 1 < max_steps:
            assert torch.equal(kept[alive], rollout.outputs[t][alive]), f"audio after {t}"
        assert torch.equal(info["method"][alive], result.methods[alive, t])
        alive &= ~term
    assert alive.sum() == 0 or len(rollout.observations) == max_steps


# ------------------------------------------------------------------------ vector layouts
def test_subproc_env_with_one_worker_equals_the_env(corpus):
    from hear_vec.env.vector import SubprocEnv

    kw = dict(data=corpus, segment_seconds=0.75, min_segment_seconds=0.5, max_steps=2)
    env = DenoiseEnv(num_envs=4, seed=6, **kw)
    sub = SubprocEnv(4, 1, seed=6, **kw)
    try:
        assert torch.equal(env.reset(), sub.reset())
        for a in actions(4, 4, seed=3):
            want, got = env.step(a), sub.step(a)
            for x, y in zip(want[:4], got[:4]):
                assert torch.equal(x, y)
            assert torch.equal(want[4]["final_observation"], got[4]["final_observation"])
        assert env.episode_stats() == sub.episode_stats()
        assert torch.equal(env.normalizer.mean, sub.normalizer.mean)
    finally:
        sub.close()


def test_subproc_env_with_two_workers_steps_all_rows(corpus):
    from hear_vec.env.vector import SubprocEnv

    sub = SubprocEnv(4, 2, seed=6, data=corpus, segment_seconds=0.75, min_segment_seconds=0.5,
                     max_steps=2)
    try:
        obs = sub.reset()
        assert obs.shape == (4, sub.observation_dim) and torch.isfinite(obs).all()
        for a in actions(4, 2, seed=3):
            obs, reward, term, _, _ = sub.step(a)
        assert term.all() and torch.isfinite(reward).all()
        assert sub.episode_stats()["episodes"] == 4
    finally:
        sub.close()


# ---------------------------------------------------------------------------- layering
def test_importing_the_env_does_not_import_the_learners_or_the_cli():
    code = ("import sys, hear_vec.env; from hear_vec.env import DenoiseEnv; "
            "import hear_vec.env.transition, hear_vec.env.rollout; "
            "bad = [m for m in sys.modules if m.startswith(('hear_vec.agents', 'hear_vec.cli'))];"
            " print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_segments_and_params_raise_clear_errors(corpus):
    with pytest.raises(ValueError, match="num_envs"):
        EnvParams(num_envs=0)
    with pytest.raises(ValueError, match="min_samples"):
        EnvParams(segment_samples=10, min_samples=20)
    seg = Segments(clean=None, noisy=torch.zeros(2, 100), lengths=torch.tensor([100, 50]),
                   snr_db=torch.zeros(2), utterance=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="clean"):
        transition.start(EnvParams(num_envs=2), seg)
    with pytest.raises(ValueError, match="corpus"):
        transition.reset(EnvParams(num_envs=2), rng.make_key(0))
