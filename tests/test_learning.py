"""Learner tests that fail for a wrong learner, and value checks of the env's reward terms.

Learning tasks (batched torch envs defined here, VecEnv protocol of hear_vec.agents):

- :class:`DelayedChoiceEnv`: 3-step episodes; every step shows a cue (one of 3) and the
  clock; the method and knob picked at step 0 are written into the observation (memory);
  the only reward comes at the last step: ``[m0 == cue] + 1 - |x0 - target(cue)|``. Steps 1
  and 2 are irrelevant, so the decision at step 0 is credited only through two steps of
  bootstrapping (SAC / TD3) or discounted returns (PPO). Optimum 2; random ~1.0; a learner
  that does not carry credit back over steps stays near random.
- :class:`ContextKnobEnv`: one-step episodes; observation = (arm cue one-hot, u ~ U(-1, 1));
  reward ``[m == cue] + 1 - mean_j |x_j - t_j(u)|`` with ``t(u) = (0.5 + 0.4u, 0.5 - 0.4u)``.
  The best constant-knob policy (right arm, knobs independent of the observation) scores
  exactly ``2 - min_x E|x - 0.5 - 0.4u| = 2 - 0.4 E|u| = 1.8`` (the median x = 0.5; u is
  independent of the cue, so arm-dependent constants do no better); the optimum is 2. The
  bar, 1.9, is above every constant-knob policy.

Pass rule of each learning test (stated in the test too): the deterministic policy's mean
return on 512 fresh episodes, measured once at the end of training, reaches the bar for at
least 2 of 3 seeds (seeds 0, 1, 2 for torch, the training env and, +1000, the evaluation env).
No seed is evaluated more than once.

How the learning tests were checked to fail (locally, reverted, never committed):
- PPO with zeroed advantages (a monkeypatch of ``PPO._gae_impl`` zeroing ``buf_adv`` after
  the returns were computed, so the critic still learns): both PPO tests fail (0 of 3 seeds
  reach the bar).
- ``gamma=0`` (no credit over steps): for SAC / TD3 this makes the critic target
  ``reward`` alone, i.e. a critic that does not bootstrap; for PPO, returns that stop at one
  step. The delayed-choice tests fail for PPO, SAC and TD3 (the knob task, one step long,
  does not depend on bootstrapping and is not meant to catch this).
- constant knobs (the actors' knob outputs replaced by their mean over the batch, so that
  they no longer depend on the observation; ``HybridGaussianActor`` and
  ``HybridDeterministicActor`` monkeypatched): the knob tests fail for PPO, SAC and TD3 (the
  best such policy scores 1.8 < 1.9).
Measured (CPU, 1 thread): zeroed PPO advantages 0/3 seeds on both tasks (delayed ~1.13,
knob ~1.21); gamma=0 0/3 for PPO (0.78-1.12), SAC (1.07-1.45), TD3 (~1.15); constant knobs
0/3 for PPO, SAC, TD3 (1.79-1.80, the analytic 1.8). Unbroken: 3/3 everywhere (delayed: PPO
1.90-1.93, SAC 1.96-1.98, TD3 1.82-1.91; knob: PPO ~1.95, SAC ~1.97, TD3 1.98-1.995).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import free_port  # noqa: E402

from hear_vec.agents import LEARNERS, ActionSpec, make_config  # noqa: E402
from hear_vec.data import SyntheticCorpus  # noqa: E402
from hear_vec.env import DenoiseEnv  # noqa: E402
from hear_vec.metrics import si_sdr, stoi  # noqa: E402
from hear_vec.ops import METHODS, denoise  # noqa: E402

SEEDS = (0, 1, 2)
PASS_SEEDS = 2  # of 3
EVAL_EPISODES = 512


# ------------------------------------------------------------------------------------ tasks
class DelayedChoiceEnv:
    """3-step episodes, reward only at the last step, for the choice made at step 0."""

    horizon = 3
    optimum = 2.0
    targets_by_cue = (0.2, 0.5, 0.8)

    def __init__(self, num_envs: int, seed: int = 0, device: Any = "cpu") -> None:
        self.num_envs, self.K = num_envs, len(self.targets_by_cue)
        # cue one-hot, clock one-hot (+ the terminal state), remembered method, remembered knob
        self.observation_dim = self.K + self.horizon + 1 + self.K + 1
        self.device = torch.device(device)
        self.action_spec = ActionSpec(self.K, (0.0,), (1.0,))
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.targets = torch.tensor(self.targets_by_cue, device=self.device)
        zeros = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.cue, self.t, self.m0 = zeros, zeros.clone(), zeros.clone()
        self.x0 = torch.zeros(num_envs, device=self.device)

    def _fresh(self) -> Tensor:
        return torch.randint(0, self.K, (self.num_envs,), generator=self.gen, device=self.device)

    def _obs(self) -> Tensor:
        later = (self.t > 0).unsqueeze(-1)
        return torch.cat([F.one_hot(self.cue, self.K).float(),
                          F.one_hot(self.t, self.horizon + 1).float(),
                          F.one_hot(self.m0, self.K).float() * later,
                          self.x0.unsqueeze(-1) * later], -1)

    def score(self, m0: Tensor, x0: Tensor, cue: Tensor) -> Tensor:
        return (m0 == cue).float() + 1.0 - (x0 - self.targets[cue]).abs()

    def reset(self) -> Tensor:
        self.cue, self.t = self._fresh(), torch.zeros_like(self.t)
        self.m0, self.x0 = torch.zeros_like(self.m0), torch.zeros_like(self.x0)
        return self._obs()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        k = action[:, 0].round().long().clamp(0, self.K - 1)
        x = action[:, 1].clamp(0, 1)
        first = self.t == 0
        self.m0 = torch.where(first, k, self.m0)
        self.x0 = torch.where(first, x, self.x0)
        last = self.t == self.horizon - 1
        score = self.score(self.m0, self.x0, self.cue)
        reward = torch.where(last, score, torch.zeros_like(score))
        self.t = self.t + 1
        final = self._obs()
        terminated = self.t >= self.horizon
        self.t = torch.where(terminated, 0, self.t)
        self.cue = torch.where(terminated, self._fresh(), self.cue)
        self.m0 = torch.where(terminated, 0, self.m0)
        self.x0 = torch.where(terminated, 0.0, self.x0)
        return (self._obs(), reward, terminated, torch.zeros_like(terminated),
                {"final_observation": final})


class ContextKnobEnv:
    """One-step episodes whose best knobs depend on the observation (see the module doc)."""

    horizon = 1
    optimum = 2.0
    best_constant_knobs = 1.8  # 2 - 0.4 * E|u|, u ~ U(-1, 1)

    def __init__(self, num_envs: int, seed: int = 0, device: Any = "cpu") -> None:
        self.num_envs, self.K = num_envs, 2
        self.observation_dim = self.K + 1
        self.device = torch.device(device)
        self.action_spec = ActionSpec(self.K, (0.0, 0.0), (1.0, 1.0))
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self._draw()

    def _draw(self) -> None:
        n = self.num_envs
        self.cue = torch.randint(0, self.K, (n,), generator=self.gen, device=self.device)
        self.u = torch.rand(n, generator=self.gen, device=self.device) * 2 - 1

    def _obs(self) -> Tensor:
        return torch.cat([F.one_hot(self.cue, self.K).float(), self.u.unsqueeze(-1)], -1)

    @staticmethod
    def targets(u: Tensor) -> Tensor:
        return torch.stack([0.5 + 0.4 * u, 0.5 - 0.4 * u], -1)

    def reset(self) -> Tensor:
        self._draw()
        return self._obs()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        k = action[:, 0].round().long().clamp(0, self.K - 1)
        x = action[:, 1:].clamp(0, 1)
        reward = (k == self.cue).float() + 1.0 - (x - self.targets(self.u)).abs().mean(-1)
        final = self._obs()
        self._draw()
        terminated = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return (self._obs(), reward, terminated, torch.zeros_like(terminated),
                {"final_observation": final})


_OFF_POLICY = dict(hidden_dims=(64, 64), batch_size=128, random_steps=1000, warmup_steps=1000,
                   actor_lr=1e-3, critic_lr=1e-3, log_interval=100_000)
_PPO = dict(hidden_dims=(64, 64), batch_size=64, update_epochs=4, actor_lr=1e-3,
            critic_lr=1e-3, log_interval=100_000)
#: (num_envs, total_steps, learner fields) per task and algorithm
SETTINGS: dict[str, dict[str, tuple[int, int, dict[str, Any]]]] = {
    "delayed": {
        "ppo": (32, 12_000, dict(_PPO, rollout_steps=6)),
        "sac": (8, 8_000, dict(_OFF_POLICY, alpha_lr=1e-3)),
        "td3": (8, 14_000, dict(_OFF_POLICY)),
    },
    "knob": {
        "ppo": (32, 16_000, dict(_PPO, rollout_steps=4)),
        "sac": (8, 8_000, dict(_OFF_POLICY, alpha_lr=1e-3)),
        "td3": (8, 8_000, dict(_OFF_POLICY)),
    },
}
TASKS = {"delayed": (DelayedChoiceEnv, 1.8), "knob": (ContextKnobEnv, 1.9)}


def _train_and_score(task: str, algo: str, seed: int, **override: Any) -> float:
    env_cls, _ = TASKS[task]
    num_envs, steps, kw = SETTINGS[task][algo]
    torch.manual_seed(seed)
    learner = LEARNERS[algo](env_cls(num_envs, seed=seed), make_config(algo, {**kw, **override}))
    learner.train(steps)
    return learner.evaluate(env_cls(EVAL_EPISODES, seed=1000 + seed),
                            EVAL_EPISODES)["mean_return"]


def _assert_most_seeds_reach(task: str, algo: str) -> None:
    _, bar = TASKS[task]
    scores = [_train_and_score(task, algo, seed) for seed in SEEDS]
    reached = sum(score >= bar for score in scores)
    # pass rule: >= 2 of 3 seeds reach the bar, each evaluated once at the end of training
    assert reached >= PASS_SEEDS, f"{algo} on {task}: {scores} (bar {bar})"


# ----------------------------------------------------------------------- 1. delayed reward
@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
def test_delayed_reward_task_reaches_90_percent_of_optimum(algo):
    """Bar 1.8 = 90 % of the optimum 2 (random ~1.0). Fails with zeroed PPO advantages and
    with gamma=0, i.e. SAC / TD3 critic targets that do not bootstrap (module docstring)."""
    _assert_most_seeds_reach("delayed", algo)


def test_delayed_reward_task_known_values():
    """Optimum 2 (the cue's method and target knob at step 0), random play about 1.0, and the
    actions of steps 1 and 2 change nothing."""
    env = DelayedChoiceEnv(4000, seed=5)
    returns = []
    for policy in ("optimal", "random"):
        obs, total = env.reset(), torch.zeros(env.num_envs)
        for t in range(env.horizon):
            cue = obs[:, :env.K].argmax(-1)
            if policy == "optimal" and t == 0:
                action = torch.stack([cue.float(), env.targets[cue]], -1)
            else:
                action = torch.stack([torch.randint(0, env.K, (env.num_envs,)).float(),
                                      torch.rand(env.num_envs)], -1)
            obs, reward, terminated, _, _ = env.step(action)
            assert bool(terminated.all()) == (t == env.horizon - 1)
            assert t == env.horizon - 1 or not reward.any()  # rewards only at the last step
            total += reward
        returns.append(total.mean().item())
    assert returns[0] == pytest.approx(DelayedChoiceEnv.optimum)
    assert 0.9 < returns[1] < 1.15 < TASKS["delayed"][1]


# ------------------------------------------------------------------------------- 2. knobs
@pytest.mark.parametrize("algo", ["ppo", "sac", "td3"])
def test_knob_task_beats_every_constant_knob_policy(algo):
    """Bar 1.9 > 1.8 = the best constant-knob policy (analytic, module docstring). Fails with
    observation-independent (batch-mean) knobs and with zeroed PPO advantages."""
    _assert_most_seeds_reach("knob", algo)


def test_knob_task_bar_is_above_the_best_constant_knob_policy():
    """Empirical check of the analytic 1.8: the right arm with knobs (0.5, 0.5), and a grid of
    other constants, all stay below the bar; the optimal policy scores 2."""
    env = ContextKnobEnv(20_000, seed=7)
    obs = env.reset()
    cue = obs[:, :2].argmax(-1).float()
    best = 0.0
    for x1 in torch.linspace(0, 1, 11):
        for x2 in torch.linspace(0, 1, 11):
            action = torch.stack([cue, torch.full_like(cue, x1), torch.full_like(cue, x2)], -1)
            reward = env.step(action)[1].mean().item()
            env.cue, env.u = obs[:, :2].argmax(-1), obs[:, 2]  # the same episodes again
            best = max(best, reward)
    assert abs(best - ContextKnobEnv.best_constant_knobs) < 0.01 and best < TASKS["knob"][1]
    optimal = torch.cat([cue.unsqueeze(-1), ContextKnobEnv.targets(obs[:, 2])], -1)
    assert env.step(optimal)[1].mean().item() == pytest.approx(ContextKnobEnv.optimum)


# ------------------------------------------------------------ 4. STOI / ESTOI reward terms
@pytest.fixture(scope="module")
def corpus():
    return SyntheticCorpus(num_utterances=8, utterance_seconds=(1.2, 1.8),
                           noise_clips_per_family=1, noise_seconds=2.0, seed=11)


@pytest.mark.parametrize("stoi_w,estoi_w,interval,measured", [
    (0.0, 1.5, 0, {3}),          # ESTOI alone, measured at the end only
    (0.7, 1.3, 2, {2, 3}),       # both, every 2 steps and at the end
    (2.0, 0.0, 1, {1, 2, 3}),    # STOI alone, every step
])
def test_quality_reward_terms_equal_the_metrics_by_hand(corpus, stoi_w, estoi_w, interval,
                                                        measured):
    """The reward of each step, recomputed from scratch: the audio by ``hear_vec.ops.denoise``
    of the previous audio with the step's method and knobs, SI-SDR by ``hear_vec.metrics.si_sdr``
    and STOI / ESTOI by ``hear_vec.metrics.stoi`` against the clean segment; the quality terms
    are taken on measuring steps against the last measured value (the noisy one at first).
    Checked to fail (locally, reverted): with the STOI / ESTOI weights swapped in
    ``transition.step`` (all three cases) and with the schedule measuring every
    ``quality_interval + 1`` steps (the two cases with an interval)."""
    scale = 4.0
    env = DenoiseEnv(corpus, num_envs=3, max_steps=3, reward_scale=scale, stoi_weight=stoi_w,
                     estoi_weight=estoi_w, quality_interval=interval, segment_seconds=1.0,
                     min_segment_seconds=0.6, seed=4)
    env.reset()
    clean = env.state.clean.clone()
    lengths = env.state.lengths.clone()
    audio = env.state.noisy.clone()
    sr = env.sample_rate
    last_si = si_sdr(audio, clean, lengths)
    last_stoi = stoi(clean, audio, sr, lengths)
    last_estoi = stoi(clean, audio, sr, lengths, extended=True)
    g = torch.Generator().manual_seed(8)
    for t in range(1, 4):
        method = torch.randint(0, len(METHODS), (3,), generator=g)
        knobs = torch.rand(3, 3, generator=g)
        action = torch.cat([method.float().unsqueeze(-1), knobs], -1)
        _, reward, terminated, _, _ = env.step(action)
        audio = denoise(audio, method, knobs, lengths)
        now_si = si_sdr(audio, clean, lengths)
        expected = (now_si - last_si) / scale
        last_si = now_si
        if t in measured:
            now_stoi = stoi(clean, audio, sr, lengths)
            now_estoi = stoi(clean, audio, sr, lengths, extended=True)
            expected = (expected + stoi_w * (now_stoi - last_stoi)
                        + estoi_w * (now_estoi - last_estoi))
            last_stoi, last_estoi = now_stoi, now_estoi
            assert (now_estoi - now_stoi).abs().max() > 1e-3  # the two terms are told apart
        torch.testing.assert_close(reward, expected, rtol=0, atol=2e-4)
        assert bool(terminated.all()) == (t == 3)


# ---------------------------------------------------------------------------------- 5. DDP
#: one PPO update per iteration (one minibatch, one epoch) with an Adam whose eps dwarfs the
#: gradients, so a step is lr/eps * gradient: linear in the gradient, unlike plain Adam (which
#: is invariant to scaling every gradient by 2 and so cannot tell a sum from a mean)
_DDP_PPO = dict(hidden_dims=(16,), rollout_steps=4, batch_size=16, update_epochs=1,
                norm_adv=False, max_grad_norm=0.0, adam_eps=1e6, actor_lr=1e4, critic_lr=1e4,
                log_interval=1)
_DDP_ENVS = 4  # per rank: 4 envs x 4 rollout steps = 16 transitions = one minibatch


def _one_ppo_iteration(data_seed: int, world: int) -> dict[str, Any]:
    torch.manual_seed(0)  # the same initial weights everywhere (rank 0's are broadcast too)
    learner = LEARNERS["ppo"](ContextKnobEnv(_DDP_ENVS, seed=data_seed),
                              make_config("ppo", _DDP_PPO))
    params = [*learner.actor.parameters(), *learner.critic.parameters()]
    before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    torch.manual_seed(10 + data_seed)  # the rollout's samples: different on every rank
    learner.train(_DDP_PPO["rollout_steps"] * _DDP_ENVS * world)
    after = torch.cat([p.detach().reshape(-1) for p in params])
    return {"delta": after - before, "global_step": learner.global_step,
            "updates": learner.num_updates}


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(_one_ppo_iteration(rank, world), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()



def test_ddp_averages_gradients_and_counts_both_ranks(tmp_path):
    """2 CPU ranks (gloo), different data on each: after one update the parameters equal a
    single-process update on the mean of the two ranks' gradients (the mean of the two
    single-process updates, the step being linear in the gradient) and differ from the update
    on their sum; the global step counts both ranks' transitions. Checked to fail (locally,
    reverted) with ``average_gradients`` summing (its division by the world size removed)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = [_one_ppo_iteration(r, 1) for r in range(2)]  # each rank's data alone
    d0, d1 = single[0]["delta"], single[1]["delta"]
    assert (d0 - d1).abs().max() > 100 * d0.abs().max() * 1e-3  # the ranks' data differ
    averaged, summed = (d0 + d1) / 2, d0 + d1
    for out in ranks:
        torch.testing.assert_close(out["delta"], averaged, rtol=1e-3, atol=1e-7)
        assert (out["delta"] - summed).abs().max() > 0.1 * summed.abs().max()
        # 16 transitions per rank, one rollout + one update each: the counter is the sum
        assert out["global_step"] == 2 * 16 and out["updates"] == 1
    assert single[0]["global_step"] == 16 and single[0]["updates"] == 1


# ------------------------------------------------------------------------ 6. inductor
def _inductor_unavailable() -> str | None:
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("gcc") is None:
        return "torch.compile(backend='inductor') on the CPU needs a C++ compiler (none found)"
    try:
        torch._dynamo.reset()
        fn = torch.compile(lambda x: torch.sin(x) * 2 + 1, backend="inductor", fullgraph=True)
        x = torch.linspace(0, 1, 8)
        torch.testing.assert_close(fn(x), torch.sin(x) * 2 + 1)
    except Exception as exc:  # noqa: BLE001 - any failure to build means "unavailable here"
        return f"inductor cannot compile on this machine: {type(exc).__name__}: {exc}"[:300]
    return None


@pytest.mark.slow
def test_inductor_compiled_env_step_matches_eager(corpus):
    """``hear_vec.env.transition.step`` under torch.compile(backend="inductor",
    fullgraph=True) on small shapes (2 rows of 0.5 s) gives eager's next state, raw
    observation, reward and flags within float32 tolerance, over two steps (the second reuses
    the compiled graph). The step is compiled on its shared-clock path (no row finishes or
    measures STOI at these steps), the graph DenoiseEnv(compile=True) runs most often. Slow:
    inductor's CPU code generation for the five denoisers and the features takes ~1-5 min on a
    2-core machine (less with a warm inductor cache); skipped when no C++ compiler works."""
    from hear_vec.env import transition

    reason = _inductor_unavailable()
    if reason:
        pytest.skip(reason)
    torch._dynamo.reset()
    env = DenoiseEnv(corpus, num_envs=2, max_steps=3, segment_seconds=0.5,
                     min_segment_seconds=0.4, seed=2)
    env.reset()
    params = env.params

    def step(state: Any, action: Tensor) -> Any:
        return transition.step(params, state, action, may_finish=False, may_measure=False)

    compiled = torch.compile(step, backend="inductor", fullgraph=True)
    g = torch.Generator().manual_seed(4)
    state_c = state_e = env.state
    for _ in range(2):
        action = torch.rand(2, 4, generator=g)
        action[:, 0] = torch.randint(0, len(METHODS), (2,), generator=g).float()
        out_c, out_e = compiled(state_c, action), step(state_e, action)
        state_c, state_e = out_c[0], out_e[0]
        torch.testing.assert_close(state_c.current, state_e.current, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out_c[1], out_e[1], rtol=1e-3, atol=1e-3)  # raw obs
        torch.testing.assert_close(out_c[2], out_e[2], rtol=1e-4, atol=1e-5)  # reward
        assert torch.equal(out_c[3], out_e[3]) and torch.equal(out_c[4], out_e[4])
