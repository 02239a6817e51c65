"""One training run: corpus → environments → learner → logs, evaluations, checkpoints, model.

``train.py`` parses flags into a :class:`RunConfig` and calls :func:`run`. Everything the run
writes goes to ``log_dir``:

- ``args.json``      the run's arguments;
- ``split.json``     which speakers and noise recordings the train / validation parts hold;
- ``checkpoint.pt``  learner (networks, optimizers, counters, RNG, next observation and
                     running episode sums), observation normalizer, the env's episode state
                     (``DenoiseEnv.state_dict``: audio and counters, the STFT recomputed on
                     load; single process only) and RNG counter,
                     evaluation history — written atomically at every evaluation, at the end
                     and on SIGINT / SIGTERM; ``--resume`` continues from it;
- ``replay.pt``      SAC / TD3: the replay buffer and the global step it belongs to, written
                     atomically just before ``checkpoint.pt`` (``save_replay=False``,
                     ``--no-save-replay``: not written; a resume then refills the replay);
- ``model.pt``       what inference needs (see :mod:`hear_vec.checkpoint`), at the end;
- ``metrics.json``   logged scalars, evaluations and the final evaluation;
- TensorBoard events (CleanRL names: charts/episodic_return, charts/SPS, losses/*, and
  eval/si_sdr_gain, eval/stoi_gain, eval/estoi_gain, eval/return).

Resume: with one process and in-process envs, ``--resume`` is bit-exact on the CPU -- a run to
N transitions then a resume to 2N ends exactly as a run straight to 2N (networks, optimizers,
RNG, env state, next actions; ``tests/test_resume.py``). Checkpoints fall only between learner
iterations (PPO: between rollout + update rounds, so no mid-rollout position exists; SAC/TD3:
between vectorized steps). Not bit-exact: without ``replay.pt`` (or with one of another step),
with several ranks or ``env_workers > 1`` (every row then starts a fresh episode from the saved
draw counter), or from a checkpoint without ``env_state``.

Signals: SIGINT and SIGTERM set a flag that the learner reads at its next iteration boundary
(``hooks.should_stop``, reduced across ranks); the checkpoint is written there and
:class:`TrainingInterrupted` raised (train.py: exit 130, one line). A second signal raises at
once, wherever the run is -- a checkpoint being written is abandoned (atomic writes remove
their temporary file) and the previous one stays.

Evaluation runs the deterministic policy on the validation split on the same segments every
time (the evaluation env's RNG counter is rewound), so successive evaluations are comparable;
it runs under a forked torch RNG, so evaluating never changes the training streams.
The split (:func:`hear_vec.data.split_corpus`, seeded by the run's seed) holds out 10 % of the
speakers — each utterance is its own speaker unless ``speaker_pattern`` / ``speaker_column``
say otherwise — and, with ``holdout_noise_fraction`` / ``holdout_noises``, noise recordings
too; both parts are drawn with the run's domain randomization (``augment`` + knobs).

Why one module (~520 lines): the session (logging, evaluation, checkpoint and replay writes),
the signal handling and the resume path all read and write the same run state in a fixed
order (a checkpoint is whole only if the signal flag, the learner's iteration boundary and the
replay write agree); split apart they would pass that state around. The configuration lives
in :mod:`hear_vec.run_config`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.agents import LEARNERS
from hear_vec.agents.base import LearnerBase, NonFiniteLossError
from hear_vec.atomic import atomic_write
from hear_vec.checkpoint import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    load_file,
    model_payload,
    save_atomic,
)
from hear_vec.data import (
    Corpus,
    CorpusSplit,
    load_corpus,
    split_corpus,
)
from hear_vec.data.splits import exclude
from hear_vec.devices import resolve_device
from hear_vec.env import DenoiseEnv
from hear_vec.env.rollout import run_episodes
from hear_vec.env.transition import STOP
from hear_vec.env.vector import GraphedEnv, SubprocEnv
from hear_vec.ops import METHODS
from hear_vec.run_config import ALGOS, FLAG_GROUPS, RUN_FIELDS, RunConfig
from hear_vec.runtime import tune_cpu_allocator

#: ``format`` of ``replay.pt`` (the SAC / TD3 replay saved beside ``checkpoint.pt``)
REPLAY_FORMAT = "hear_vec.replay"

__all__ = ["RunConfig", "RUN_FIELDS", "FLAG_GROUPS", "TrainingInterrupted", "build_learner",
           "evaluate", "run", "ALGOS", "load_split", "load_corpora"]

class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM during training; the checkpoint was written before this is raised
    (``saved``), or -- a second signal during the wind-down -- the run stopped at once and the
    last checkpoint written before (``path``, possibly None) is intact."""

    def __init__(self, step: int, path: Path | None, saved: bool = True,
                 cause: str = "interrupted") -> None:
        if saved:
            text = f"{cause} at step {step}; checkpoint saved to {path} (continue with --resume)"
        else:
            last = (f"the last checkpoint ({path}) is intact" if path is not None
                    else "no checkpoint was written")
            text = f"{cause} again at step {step}: stopped at once without saving; {last}"
        super().__init__(text)
        self.step, self.path, self.saved = step, path, saved


class _SecondSignal(BaseException):
    """A second SIGINT / SIGTERM: leave at once (BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way swallows it; atomic writes remove their temporary file)."""


class _StopSignals:
    """SIGINT and SIGTERM set a flag that the learner reads at its next iteration boundary
    (``hooks.should_stop``), so the checkpoint written then holds a whole learner state; a
    second signal raises :class:`_SecondSignal` wherever the process is (a checkpoint being
    written is abandoned, its temporary file removed, the previous checkpoint intact)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.name: str | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.name is not None:
            raise _SecondSignal
        self.name = signal.Signals(signum).name


# ------------------------------------------------------------------------------------------
# building blocks
def build_learner(cfg: RunConfig, env: DenoiseEnv, device: torch.device) -> LearnerBase:
    """The learner of ``cfg.algo`` with the learner fields the run sets (None: default)."""
    return LEARNERS[cfg.algo](env, cfg.learner_config(), device)


def load_split(cfg: RunConfig, device: torch.device) -> CorpusSplit:
    """The run's corpus (sources + randomization) split into training and validation parts."""
    data = None if cfg.clean_dir is not None else cfg.data
    corpus = load_corpus(data, clean_dir=cfg.clean_dir, noise_dir=cfg.noise_dir,
                         snr_range=tuple(cfg.snr_range), device=device, seed=cfg.seed,
                         randomization=cfg.randomization())
    if cfg.exclude_speakers or cfg.exclude_noises:  # reserved for a final test: never loaded
        corpus = exclude(corpus, cfg.exclude_speakers or (), cfg.exclude_noises or (),
                         speaker_pattern=cfg.speaker_pattern, speaker_column=cfg.speaker_column)
    if len(corpus) < 2:
        raise ValueError(f"the corpus has {len(corpus)} utterance(s); a train/validation split "
                         "needs at least 2")
    return split_corpus(corpus, cfg.valid_fraction, cfg.seed,
                        speaker_pattern=cfg.speaker_pattern, speaker_column=cfg.speaker_column,
                        holdout_speakers=cfg.holdout_speakers,
                        holdout_noise_fraction=cfg.holdout_noise_fraction,
                        holdout_noises=cfg.holdout_noises)


def load_corpora(cfg: RunConfig, device: torch.device) -> tuple[Corpus, Corpus]:
    """(train, valid) of :func:`load_split`."""
    split = load_split(cfg, device)
    return split.train, split.valid


def make_envs(cfg: RunConfig, train: Corpus, valid: Corpus, device: torch.device,
              rank: int = 0) -> tuple[DenoiseEnv, DenoiseEnv]:
    common = dict(device=device, max_steps=cfg.max_steps, stop_action=cfg.stop_action,
                  floor_features=cfg.floor_features,
                  reward_scale=cfg.reward_scale, stoi_weight=cfg.stoi_weight,
                  estoi_weight=cfg.estoi_weight, quality_interval=cfg.quality_interval,
                  diversity_weight=cfg.diversity_weight, worse_penalty=cfg.worse_penalty,
                  segment_seconds=cfg.segment_seconds,
                  min_segment_seconds=min(1.0, cfg.segment_seconds))
    seed = cfg.seed + 7919 * rank
    if cfg.env_workers > 1:
        env: Any = SubprocEnv(cfg.num_envs, cfg.env_workers, seed=seed, data=train,
                              compile=cfg.compile, compile_backend=cfg.compile_backend,
                              **common)
    else:
        env = DenoiseEnv(train, num_envs=cfg.num_envs, seed=seed, compile=cfg.compile,
                         compile_backend=cfg.compile_backend, **common)
        if cfg.cudagraphs and not cfg.stop_action:
            env = GraphedEnv(env)  # CUDA graphs of the env step (shared clock only)
    eval_env = DenoiseEnv(valid, num_envs=min(cfg.num_envs, cfg.eval_episodes),
                          seed=cfg.seed + 104_729, normalizer=env.normalizer,
                          update_normalizer=False, track_quality=True, **common)
    return env, eval_env


@torch.no_grad()
def evaluate(learner: LearnerBase, env: DenoiseEnv, episodes: int) -> dict[str, float]:
    """The deterministic policy on fixed validation clips: ``episodes`` (rounded up to whole
    batches of ``env.num_envs``) segments drawn from the evaluation env's corpus with its own
    key (the same clips at every evaluation), one episode each, no autoreset. Returns the mean
    return, SI-SDR / STOI / ESTOI gains, episode length, the fraction of episodes stopped by the
    stop action (when enabled) and the fraction made worse than the input (SI-SDR)."""
    batches = max(1, math.ceil(episodes / env.num_envs))
    params = env.params
    sums: dict[str, Tensor] = {}
    for b in range(batches):
        segments = env.corpus.draw(rng.fold_in(env.key, b), env.num_envs,
                                   params.segment_samples, params.min_samples)
        out = run_episodes(params, segments, lambda obs: learner.act(obs, deterministic=True),
                           env.normalizer)
        st = out.state
        gain = st.si_sdr - st.si_sdr_start
        row = {"return": st.episode_return, "si_sdr_gain": gain,
               "length": st.step.to(gain.dtype), "worse": (gain < 0).to(gain.dtype)}
        if params.stop_action:
            row["stopped"] = (out.methods == STOP).any(-1).to(gain.dtype)
        if params.measure_stoi:
            row["stoi_gain"] = st.stoi - st.stoi_start
        if params.measure_estoi:
            row["estoi_gain"] = st.estoi - st.estoi_start
        for key, value in row.items():
            sums[key] = sums.get(key, 0) + value.to(torch.float64).sum()
    count = batches * env.num_envs
    result = {k: float(v) / count for k, v in sums.items()}
    result["episodes"] = float(count)
    return result


# ------------------------------------------------------------------------------------------
# logging
class _Hooks:
    """Learner callbacks: TensorBoard + progress bar on every read-back; evaluation and an
    atomic checkpoint at every evaluation interval (rank 0 only)."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(step, metrics)

    def on_eval(self, step: int) -> None:
        self.run.evaluate_and_checkpoint(step)

    def should_stop(self) -> bool:
        """A signal arrived (on any rank: the flag is reduced across ranks)."""
        stop = self.run.signals is not None and self.run.signals.name is not None
        if self.run.world > 1:
            import torch.distributed as dist
            flag = torch.tensor([float(stop)], device=self.run.learner.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop


class _Run:
    def __init__(self, cfg: RunConfig, learner: LearnerBase, env: DenoiseEnv,
                 eval_env: DenoiseEnv, log_dir: Path, rank: int) -> None:
        self.cfg, self.learner, self.env, self.eval_env = cfg, learner, env, eval_env
        self.log_dir, self.rank = log_dir, rank
        self.world = 1
        self.signals: _StopSignals | None = None
        self.history: dict[str, list] = {"logs": [], "evals": []}
        self.writer = None
        self.bar = None
        self.last_checkpoint: Path | None = None

    def open(self, start_step: int) -> None:
        if self.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(self.log_dir))
        if self.cfg.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=self.cfg.total_steps, initial=start_step, unit="step",
                            dynamic_ncols=True, desc=f"train {self.cfg.algo}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.rank != 0:
            return
        env_stats = self.env.episode_stats(reset=True)
        row = {"step": step, **metrics}
        for key, value in env_stats.items():
            if key != "episodes":
                row[f"charts/episodic_{key}"] = value
        self.history["logs"].append(row)
        for key, value in row.items():
            if key != "step" and isinstance(value, float) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        if self.bar is not None:
            self.bar.n = min(step, self.cfg.total_steps)
            post = {"SPS": f"{metrics.get('charts/SPS', 0.0):.0f}"}
            if "charts/episodic_return" in metrics:
                post["return"] = f"{metrics['charts/episodic_return']:.3f}"
            if "charts/episodic_si_sdr_gain" in row:
                post["ΔSI-SDR"] = f"{row['charts/episodic_si_sdr_gain']:.2f}dB"
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()

    def evaluate(self, step: int) -> dict[str, float]:
        device = self.learner.device
        # under a forked RNG: an evaluation never moves the training streams
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = evaluate(self.learner, self.eval_env, self.cfg.eval_episodes)
        result["step"] = step
        self.history["evals"].append(result)
        if self.writer is not None:
            for key, value in result.items():
                if key not in ("step", "episodes"):
                    self.writer.add_scalar(f"eval/{key}", value, step)
        return result

    def evaluate_and_checkpoint(self, step: int) -> None:
        if self.rank != 0:
            return
        result = self.evaluate(step)
        self.save_checkpoint()
        _write_json(self.log_dir / "metrics.json", {"final_eval": {}, **self.history})
        line = (f"eval @ {step}: return {result.get('return', float('nan')):.3f}, "
                f"SI-SDR gain {result.get('si_sdr_gain', float('nan')):+.2f} dB, "
                f"STOI gain {result.get('stoi_gain', float('nan')):+.3f}, "
                f"ESTOI gain {result.get('estoi_gain', float('nan')):+.3f}")
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def save_checkpoint(self) -> Path:
        """``replay.pt`` (SAC/TD3, unless ``save_replay`` is off), then ``checkpoint.pt``, each
        written atomically; both carry the global step, so a resume uses the replay only when
        it belongs to the checkpoint."""
        step = self.learner.global_step
        replay = getattr(self.learner, "replay", None)
        if self.cfg.save_replay and replay is not None:
            save_atomic({"format": REPLAY_FORMAT, "global_step": step,
                         "replay": replay.state_dict()}, self.log_dir / "replay.pt")
        payload = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "learner": self.learner.state_dict(),
            "normalizer": self.env.normalizer.export(),
            "env_draws": self.env.draw_counter(),
            "args": _jsonable(asdict(self.cfg)),
            "history": self.history,
        }
        if self.world == 1 and hasattr(self.env, "state_dict"):
            payload["env_state"] = self.env.state_dict()
        self.last_checkpoint = save_atomic(payload, self.log_dir / "checkpoint.pt")
        return self.last_checkpoint

    def write_outputs(self, final_eval: dict[str, float]) -> None:
        args = _jsonable(asdict(self.cfg))
        model = model_payload(algo=self.cfg.algo, policy=self.learner.inference_state(),
                              normalizer=self.env.normalizer.export(), methods=METHODS,
                              num_features=self.env.params.feature_dim,
                              max_steps=self.cfg.max_steps,
                              sample_rate=self.env.sample_rate, args=args,
                              final_eval=final_eval, stop_action=self.cfg.stop_action,
                              floor_features=self.cfg.floor_features)
        save_atomic(model, self.log_dir / "model.pt")
        _write_json(self.log_dir / "metrics.json",
                    {"final_eval": final_eval, **self.history})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_json(path: Path, payload: Any) -> None:
    with atomic_write(path, "w") as handle:  # temp file + rename; the user's umask
        handle.write(json.dumps(_jsonable(payload), indent=2))


# ------------------------------------------------------------------------------------------
def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank), initializing torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def run(cfg: RunConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the final evaluation. Raises ValueError for bad
    settings, NonFiniteLossError (checkpoint kept), TrainingInterrupted (checkpoint saved)."""
    cfg.validate()
    rank, world, local_rank = _distributed()
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.tune_cpu_allocator:
        tune_cpu_allocator()  # process-wide glibc malloc thresholds (hear_vec.runtime)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed + 1_000_003 * rank)
    log_dir = Path(cfg.log_dir)
    checkpoint_path = log_dir / "checkpoint.pt"
    resume_state = None
    if cfg.resume:
        if not checkpoint_path.is_file():
            raise ValueError(f"--resume: no checkpoint at {checkpoint_path}")
        resume_state = load_file(checkpoint_path, CHECKPOINT_FORMAT)
        saved_algo = resume_state["args"].get("algo")
        if saved_algo != cfg.algo:
            raise ValueError(f"--resume: {checkpoint_path} is a {saved_algo} run, not {cfg.algo}")
    elif rank == 0 and (log_dir / "model.pt").exists() and checkpoint_path.exists():
        raise ValueError(f"{log_dir} already holds a finished run; pick another --log-dir "
                         "(or --resume to continue it)")

    split = load_split(cfg, device)
    train_corpus, valid_corpus = split.train, split.valid
    env, eval_env = make_envs(cfg, train_corpus, valid_corpus, device, rank)
    learner = build_learner(cfg, env, device)
    session = _Run(cfg, learner, env, eval_env, log_dir, rank)
    session.world = world
    if resume_state is not None:
        _resume(session, resume_state, log_dir, rank, world)
    if rank == 0:
        log_dir.mkdir(parents=True, exist_ok=True)
        _write_json(log_dir / "args.json", asdict(cfg))
        _write_json(log_dir / "split.json", split.report())
    session.open(learner.global_step)
    # Ctrl-C and a polite kill (SIGTERM, e.g. from a scheduler) stop at the next iteration
    # boundary with a checkpoint; a second one leaves at once (_StopSignals)
    signals = _StopSignals()
    session.signals = signals
    signals.install()
    start = time.perf_counter()
    final: dict[str, Any] = {}
    try:
        try:
            learner.train(cfg.total_steps, hooks=_Hooks(session))
            if signals.name is not None and learner.global_step < cfg.total_steps:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            session.close()
            cause = f"{signals.name or 'SIGINT'}: interrupted"
            path = session.save_checkpoint() if rank == 0 else log_dir / "checkpoint.pt"
            raise TrainingInterrupted(learner.global_step, path, cause=cause) from None
        except NonFiniteLossError:
            session.close()
            raise
        if rank == 0:
            final = session.evaluate(learner.global_step)
            final["train_seconds"] = time.perf_counter() - start
            final["device"] = str(device)
            session.save_checkpoint()
            session.write_outputs(final)
    except _SecondSignal:
        session.close()
        raise TrainingInterrupted(learner.global_step, session.last_checkpoint, saved=False,
                                  cause=f"{signals.name}: interrupted") from None
    finally:
        signals.uninstall()
        if hasattr(env, "close"):
            env.close()  # SubprocEnv workers
    session.close()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return final


def _resume(session: _Run, state: dict[str, Any], log_dir: Path, rank: int, world: int) -> None:
    """Restore the learner, normalizer, env and (SAC/TD3) replay of ``state`` into ``session``.

    One process, a DenoiseEnv and a checkpoint with ``env_state``: the env's episode state and
    the learner's position in it are restored, so the run goes on bit for bit. Otherwise
    (several ranks, --env-workers, an older checkpoint) every env row starts a fresh episode
    from the saved draw counter. The replay comes from ``replay.pt`` when ``save_replay`` is on
    and the file was written with this checkpoint; without it the replay refills from fresh
    experience (``warmup_steps`` before updating again) and the run is not bit-exact."""
    cfg, learner, env = session.cfg, session.learner, session.env
    learner_state = dict(state["learner"])
    replay_path = log_dir / "replay.pt"
    if cfg.save_replay and hasattr(learner, "replay") and replay_path.is_file():
        try:
            saved = torch.load(replay_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unreadable: train on, refilling the replay
            print(f"train.py: warning: {replay_path} unreadable ({exc}); the replay refills",
                  file=sys.stderr)
            saved = None
        step = int(learner_state["counters"]["global_step"])
        if isinstance(saved, dict) and saved.get("format") == REPLAY_FORMAT:
            if int(saved["global_step"]) == step:
                learner_state["replay"] = saved["replay"]
            else:
                print(f"train.py: warning: {replay_path} is of step {saved['global_step']}, "
                      f"the checkpoint of step {step}; the replay refills", file=sys.stderr)
    env.normalizer.load_state_dict(
        {k: state["normalizer"][k] for k in ("count", "mean", "m2")})
    restored = False
    if world == 1 and "env_state" in state and hasattr(env, "load_state_dict"):
        env.load_state_dict(state["env_state"])
        restored = True
    else:
        env.reset(draws=int(state["env_draws"]) + 7919 * rank)
    learner.load_state_dict(learner_state, restore_position=restored)
    session.history = state.get("history", session.history)
