"""One training run: corpus → environments → learner → logs, evaluations, checkpoints, model.

``train.py`` parses flags into a :class:`RunConfig` and calls :func:`run`. Everything the run
writes goes to ``log_dir``:

- ``args.json``      the run's arguments;
- ``split.json``     which speakers and noise recordings the train / validation parts hold;
- ``checkpoint.pt``  learner (networks, optimizers, counters, RNG, next observation and
                     running episode sums), observation normalizer, the env's full episode
                     state (``DenoiseEnv.state_dict``; single process only) and RNG counter,
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
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hear_vec import rng
from hear_vec.agents import LEARNERS, make_config
from hear_vec.agents.base import LearnerBase, NonFiniteLossError
from hear_vec.atomic import atomic_write
from hear_vec.checkpoint import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    load_file,
    model_payload,
    save_atomic,
)
from hear_vec.config_flags import (
    LEARNER_GROUP,
    check_algo_keys,
    check_keys,
    learner_fields,
    with_learner_fields,
)
from hear_vec.data import (
    PRESETS,
    Corpus,
    CorpusSplit,
    Randomization,
    RandomizationError,
    load_corpus,
    parse_sources,
    resolve_randomization,
    split_corpus,
)
from hear_vec.data.randomize import KNOBS
from hear_vec.data.splits import exclude
from hear_vec.devices import resolve_device
from hear_vec.env import DenoiseEnv
from hear_vec.env.rollout import run_episodes
from hear_vec.env.transition import STOP
from hear_vec.env.vector import GraphedEnv, SubprocEnv
from hear_vec.ops import METHODS
from hear_vec.runtime import tune_cpu_allocator

#: ``format`` of ``replay.pt`` (the SAC / TD3 replay saved beside ``checkpoint.pt``)
REPLAY_FORMAT = "hear_vec.replay"

__all__ = ["RunConfig", "RUN_FIELDS", "FLAG_GROUPS", "TrainingInterrupted", "build_learner",
           "evaluate", "run", "ALGOS", "load_split", "load_corpora"]

ALGOS = ("ppo", "sac", "td3")


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


_RUN = "run"
_ENV = "environment and reward"
_DATA = "data (README: Data sources)"
_AUG = "domain randomization (unset: the --augment preset's value)"
#: the order of train.py's flag groups
FLAG_GROUPS = (_RUN, _ENV, _DATA, _AUG, LEARNER_GROUP)


def _flag(default: Any = None, help: str = "", group: str = _RUN, **meta: Any) -> Any:
    """A RunConfig field with its train.py flag's help, group and argparse overrides."""
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass
@with_learner_fields  # below @dataclass: it adds the fields before dataclass reads them
class RunConfig:
    """All flags of train.py: one field per flag (``--field-name``), help in the metadata.

    Every learner field that this class does not declare is added by
    :func:`~hear_vec.config_flags.with_learner_fields` as ``X | None = None`` (None: the
    learner's default); setting one that ``algo``'s learner lacks is an error. Build from a
    mapping (``args.json``, sweep files) with :meth:`from_dict`, which rejects unknown keys."""

    # -- run
    algo: str = _flag("ppo", f"one of {', '.join(ALGOS)}")
    total_steps: int = _flag(200_000, "env transitions over all environments")
    num_envs: int = _flag(64, "environments stepped together (e.g. 4096 on a GPU)")
    device: str = _flag("auto", "auto, cpu, cuda or cuda:N")
    seed: int = _flag(0)
    log_dir: str = _flag("runs/rl_train")
    eval_interval: int = _flag(20_000, "transitions between evaluations + checkpoints (0: only "
                                       "at the end)")
    eval_episodes: int = _flag(256, "validation episodes per evaluation (deterministic policy)")
    log_interval: int | None = _flag(None, "learner iterations between log read-backs (learner "
                                           "default)")
    compile: bool = _flag(False, "torch.compile env step and updates")
    compile_backend: str = _flag("inductor", "torch.compile backend (aot_eager for quick "
                                             "checks)")
    cudagraphs: bool = _flag(False, "CUDA graphs for the env step (without --stop-action) and "
                                    "the updates")
    env_workers: int = _flag(1, "CPU: step the environments in this many single-threaded "
                                "worker processes (e.g. one per core; 1 = in this process)")
    tune_cpu_allocator: bool = _flag(True, "on the CPU keep freed memory in the process "
                                           "(glibc malloc thresholds: ~1.4x faster env steps); "
                                           "--no-tune-cpu-allocator keeps glibc's defaults")
    resume: bool = _flag(False, "continue from <log-dir>/checkpoint.pt")
    save_replay: bool = _flag(True, "SAC/TD3: write replay.pt beside checkpoint.pt "
                                    "(--no-save-replay for huge replays: a resume refills the "
                                    "replay and is not bit-exact)")
    progress: bool = _flag(True, "progress bar (--no-progress: none)")
    # -- environment and reward
    max_steps: int = _flag(3, "most denoisers per episode", _ENV)
    stop_action: bool = _flag(False, "add a stop action that ends the chain and keeps the audio "
                                     "as it is", _ENV)
    floor_features: bool = _flag(False, "observe 34 noise-floor features per signal (per-band "
                                        "SNR proxies)", _ENV)
    reward_scale: float = _flag(5.0, "divides the SI-SDR gain in dB", _ENV)
    stoi_weight: float = _flag(0.0, "weight of the STOI gain in the reward", _ENV)
    estoi_weight: float = _flag(0.0, "weight of the ESTOI gain in the reward", _ENV)
    quality_interval: int = _flag(0, "measure STOI/ESTOI every N steps and at the last (0: "
                                     "last only)", _ENV)
    diversity_weight: float = _flag(0.0, "weight of the method-diversity term", _ENV)
    segment_seconds: float = _flag(2.0, "longest training segment; lengths vary per episode",
                                   _ENV)
    # -- data
    data: str | tuple[str, ...] = _flag(
        "synthetic", "speech sources, each with an optional weight: 'synthetic' (default), a "
        "meta.csv, a folder with meta.csv or clean/ + noisy/, or a folder of clean speech "
        "(e.g. --data synthetic:1 VB/train:2)", _DATA, metavar="SRC[:W]")
    clean_dir: str | None = _flag(None, "clean speech folder (with --noise-dir)", _DATA)
    noise_dir: str | tuple[str, ...] | None = _flag(
        None, "noise sources mixed on the fly: folders or 'synthetic' (the synthetic "
        "families), with weights", _DATA, metavar="SRC[:W]", aliases=("--noise",))
    snr_range: tuple[float, float] = _flag((-5.0, 15.0), "SNR range in dB for mixed sources",
                                           _DATA)
    valid_fraction: float = _flag(0.1, "speakers (by default: utterances) held out for "
                                       "evaluation", _DATA)
    speaker_pattern: str | None = _flag(
        None, "speaker = group 1 of REGEX on the utterance name, e.g. '^([^_]+_[^_]+)'; whole "
        "speakers go to one side", _DATA, metavar="REGEX")
    speaker_column: str | None = _flag(None, "speaker = this meta.csv column (utterances "
                                             "without it: the pattern)", _DATA, metavar="NAME")
    holdout_speakers: tuple[str, ...] | None = _flag(
        None, "validation speakers by name, e.g. 'a b' or 'a,b' (instead of --valid-fraction)",
        _DATA, metavar="NAME")
    holdout_noise_fraction: float = _flag(
        0.0, "noise recordings held out: validation mixes only with them, training only with "
        "the rest (default 0: shared)", _DATA)
    holdout_noises: tuple[str, ...] | None = _flag(
        None, "validation noise recordings by name (as in split.json; the .wav/.flac "
        "extension may be left out)", _DATA, metavar="NAME")
    exclude_speakers: tuple[str, ...] | None = _flag(
        None, "speakers reserved for a final test: never loaded into training or validation "
        "(labels as --holdout-speakers)", _DATA, metavar="LABEL")
    exclude_noises: tuple[str, ...] | None = _flag(
        None, "noise recordings reserved for a final test: never mixed into training or "
        "validation", _DATA, metavar="NAME")
    # -- domain randomization (hear_vec.data.randomize): the preset, each knob None = its value
    augment: str = _flag("off", "preset of every knob below: off (default) or domain", _AUG,
                         choices=sorted(PRESETS))
    level_range: tuple[float, float] | str | None = _flag(
        None, "LO HI: RMS level of the noisy mixture in dBFS; off: keep item levels", _AUG,
        metavar="LEVEL")
    reverb_prob: float | None = _flag(None, "probability of a synthetic room response on the "
                                            "speech", _AUG)
    rt60_range: tuple[float, float] | None = _flag(None, "RT60 of the room responses, s", _AUG)
    drr_range: tuple[float, float] | None = _flag(None, "direct-to-reverberant ratio, dB", _AUG)
    tilt_range: tuple[float, float] | None = _flag(None, "channel tilt in dB/octave (speech and "
                                                         "noise alike)", _AUG)
    eq_bands: int | None = _flag(None, "random peaking EQ bands of the channel (0-4)", _AUG)
    eq_gain_db: float | None = _flag(None, "EQ band gains drawn in [-G, G] dB", _AUG)
    eq_freq_range: tuple[float, float] | None = _flag(None, "EQ band centres, Hz", _AUG)
    eq_width_range: tuple[float, float] | None = _flag(None, "EQ band widths, octaves", _AUG)
    lowpass_prob: float | None = _flag(None, "probability of a low-pass band limit", _AUG)
    lowpass_range: tuple[float, float] | None = _flag(None, "low-pass cutoff, Hz", _AUG)
    highpass_prob: float | None = _flag(None, "probability of a high-pass", _AUG)
    highpass_range: tuple[float, float] | None = _flag(None, "high-pass cutoff, Hz", _AUG)
    noise_count: tuple[int, int] | None = _flag(None, "overlapping noises per row (1-4)", _AUG)
    noise_gain_range: tuple[float, float] | None = _flag(None, "extra noises relative to the "
                                                               "main one, dB", _AUG)
    noise_tilt_range: tuple[float, float] | None = _flag(None, "noise-only tilt, dB/octave", _AUG)
    babble_prob: float | None = _flag(None, "probability that the main noise is babble of the "
                                            "corpus's own utterances", _AUG)
    babble_talkers: tuple[int, int] | None = _flag(None, "talkers per babble clip", _AUG)
    # -- learner hyper-parameters: added by @with_learner_fields (None: the learner's default)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "") -> RunConfig:
        """A RunConfig from a flat mapping (``args.json``, a sweep's arguments): keys are field
        names (dashes or a leading ``--`` allowed), lists become tuples. An unknown key is a
        ValueError naming the nearest field. A legacy ``extra`` dict (older args.json) is
        merged in; ``None`` values keep the default."""
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if key == "extra" and isinstance(value, Mapping):
                for k, v in value.items():
                    flat[_field_key(k)] = v
                continue
            flat[_field_key(key)] = value
        check_keys(flat, RUN_FIELDS, where)
        return cls(**{k: _tuples(v) for k, v in flat.items()})

    def learner_values(self) -> dict[str, Any]:
        """The learner fields this run sets (not None), by field name."""
        names = learner_fields()
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def learner_config(self) -> Any:
        """The learner config of ``algo`` with the fields this run sets (validated)."""
        return make_config(self.algo, self.learner_values())

    def validate(self) -> None:
        """Raise ValueError with one clear line for an impossible setting."""
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {', '.join(ALGOS)}")
        check_algo_keys(self.algo, self.learner_values(), style="flag")
        self.learner_config()  # the learner's own checks, before any data is loaded
        if self.total_steps < 1:
            raise ValueError(f"--total-steps must be positive, got {self.total_steps}")
        if self.num_envs < 1:
            raise ValueError(f"--num-envs must be at least 1, got {self.num_envs}")
        if self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1, got {self.max_steps}")
        if not 1 <= self.env_workers <= self.num_envs:
            raise ValueError(f"--env-workers must be in [1, --num-envs], got {self.env_workers}")
        if not self.reward_scale > 0:
            raise ValueError(f"--reward-scale must be positive, got {self.reward_scale}")
        if self.quality_interval < 0:
            raise ValueError(f"--quality-interval must be >= 0, got {self.quality_interval}")
        if not self.segment_seconds > 0:
            raise ValueError(f"--segment-seconds must be positive, got {self.segment_seconds}")
        if self.eval_interval < 0 or self.eval_episodes < 1:
            raise ValueError("--eval-interval must be >= 0 and --eval-episodes >= 1")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"--valid-fraction must be in (0, 1), got {self.valid_fraction}")
        lo, hi = self.snr_range
        if not lo <= hi:
            raise ValueError(f"--snr-range needs LO <= HI, got {lo} {hi}")
        if self.clean_dir is not None and self.noise_dir is None:
            raise ValueError("--clean-dir and --noise-dir go together")
        for spec in ([] if self.clean_dir is not None else parse_sources(self.data)):
            if spec.location != "synthetic" and not Path(spec.location).exists():
                raise ValueError(f"--data {spec.location}: no such file or folder (give "
                                 "'synthetic', a meta.csv, a folder with clean/ and noisy/, or "
                                 "a folder of clean speech)")
        if self.clean_dir is not None and not Path(self.clean_dir).is_dir():
            raise ValueError(f"--clean-dir {self.clean_dir}: no such folder")
        for spec in parse_sources(self.noise_dir):
            if spec.location != "synthetic" and not Path(spec.location).is_dir():
                raise ValueError(f"--noise-dir {spec.location}: no such folder")
        if self.speaker_pattern is not None:
            try:
                re.compile(self.speaker_pattern)
            except re.error as err:
                raise ValueError(f"--speaker-pattern {self.speaker_pattern!r} is not a valid "
                                 f"regular expression ({err})") from None
        if not 0.0 <= self.holdout_noise_fraction < 1.0:
            raise ValueError(f"--holdout-noise-fraction must be in [0, 1), got "
                             f"{self.holdout_noise_fraction}")
        self.randomization()

    def randomization(self) -> Randomization:
        """The domain randomization of the draws: ``augment``'s preset with the knobs set."""
        try:
            return resolve_randomization(self.augment, **{k: getattr(self, k) for k in KNOBS})
        except RandomizationError as err:
            raise ValueError(f"--{err.field.replace('_', '-')} {err.message}") from None


#: every RunConfig field (= train.py flag, sweep key, args.json key)
RUN_FIELDS = tuple(f.name for f in fields(RunConfig))


def _field_key(key: str) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


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
                  diversity_weight=cfg.diversity_weight, segment_seconds=cfg.segment_seconds,
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
