"""The configuration of one training run: :class:`RunConfig`, one field per train.py flag.

Each field carries its flag's help and group in ``metadata`` (:func:`_flag`); the learner
fields (PPO / SAC / TD3) are added by :func:`hear_vec.config_flags.with_learner_fields` as
``X | None = None`` (None: the learner's default). train.py's parser, sweep keys and
``args.json`` are generated from these fields (:mod:`hear_vec.config_flags`), so a new flag is
one field here. ``RunConfig.from_dict`` is the checked way in (unknown keys name the nearest).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hear_vec.agents import make_config
from hear_vec.config_flags import (
    LEARNER_GROUP,
    check_algo_keys,
    check_keys,
    learner_fields,
    with_learner_fields,
)
from hear_vec.data import (
    PRESETS,
    Randomization,
    RandomizationError,
    parse_sources,
    resolve_randomization,
)
from hear_vec.data.randomize import KNOBS

__all__ = ["ALGOS", "FLAG_GROUPS", "RUN_FIELDS", "RunConfig"]

ALGOS = ("ppo", "sac", "td3")

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
    worse_penalty: float = _flag(0.0, "extra weight w of a final SI-SDR below the input's "
                                      "(a loss counts 1 + w times)", _ENV)
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


