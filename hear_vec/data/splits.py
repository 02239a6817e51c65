"""Train/validation splits that hold out whole speakers and noise recordings.

:func:`split_corpus` is a pure function of (corpus, seed, settings):

1. Speakers. Each utterance gets a speaker label: the value of meta.csv column
   ``speaker_column`` where the utterance has one, else group 1 of ``speaker_pattern``
   (``re.search`` on the utterance name without its .wav/.flac extension; the whole match
   when the pattern has no group; ``'^([^_]+_[^_]+)'`` gives arctic_aew, sbasr_spk1,
   timit_LDC93S1 on dev_audio), else
   the utterance name itself (default: every utterance is its own speaker, which is the
   plain per-utterance split). Whole speakers go to one side: ``holdout_speakers`` (labels)
   when given, else the first ``min(G - 1, max(1, round(valid_fraction * G)))`` of the G
   speakers in the order of ``argsort(rng.uniform(make_key(seed), (G,), float64))``.
2. Noises (corpora that mix noise on the fly). With ``holdout_noises`` (item names, with or
   without their .wav/.flac extension) or
   ``holdout_noise_fraction`` f > 0 (``min(K - 1, max(1, round(f * K)))`` of the K noise items,
   ordered by ``rng.uniform(fold_in(make_key(seed), 0x401), (K,), float64)``), the validation
   part mixes only with the held-out noise items and the training part only with the rest;
   otherwise both share every noise item. Babble (built from a part's own utterances) stays
   in both parts; recorded noise of paired rows stays with its utterance.

The result (:class:`CorpusSplit`) names the speakers and noises of each side.

:func:`exclude` drops speakers and noise items from a corpus before any split: what a final
test reserves (train.py's ``--exclude-speakers`` / ``--exclude-noises``), so that neither the
training nor the validation part ever holds it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from hear_vec import rng
from hear_vec.audio_io import AUDIO_EXTENSIONS
from hear_vec.data.storage import CorpusError

if TYPE_CHECKING:  # Corpus.split imports this module: no runtime import back
    from hear_vec.data.bank import Corpus

__all__ = ["CorpusSplit", "split_corpus", "speaker_labels", "exclude"]

_NOISE_STREAM = 0x401


@dataclass
class CorpusSplit:
    """A split and what went where (speaker labels and noise item names)."""

    train: Corpus
    valid: Corpus
    train_speakers: list[str]
    valid_speakers: list[str]
    train_noises: list[str] | None   #: None: the parts share every noise (or none is mixed)
    valid_noises: list[str] | None
    settings: dict[str, object] = field(default_factory=dict)

    def report(self) -> dict[str, object]:
        """JSON-able summary (counts, names, settings)."""
        return {"settings": self.settings,
                "train": {"utterances": len(self.train), "speakers": self.train_speakers,
                          "noises": self.train_noises},
                "valid": {"utterances": len(self.valid), "speakers": self.valid_speakers,
                          "noises": self.valid_noises}}


def _stem(name: str) -> str:
    """An utterance name without its audio file extension."""
    lower = name.lower()
    for ext in AUDIO_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def speaker_labels(corpus: Corpus, speaker_pattern: str | None = None,
                   speaker_column: str | None = None) -> list[str]:
    """One speaker label per utterance (rule: module docstring, step 1)."""
    meta = getattr(corpus, "meta", None) or [{} for _ in corpus.names]
    if speaker_column is not None:
        if not any(str(m.get(speaker_column, "")).strip() for m in meta):
            have = sorted({k for m in meta for k in m})
            raise CorpusError(f"speaker_column {speaker_column!r} is not a column of the "
                              f"corpus's meta.csv (extra columns: {', '.join(have) or 'none'})")
    regex = None
    if speaker_pattern is not None:
        try:
            regex = re.compile(speaker_pattern)
        except re.error as err:
            raise CorpusError(f"speaker_pattern {speaker_pattern!r} is not a valid regular "
                              f"expression ({err})") from err
    labels = []
    for name, m in zip(corpus.names, meta):
        value = str(m.get(speaker_column, "")).strip() if speaker_column is not None else ""
        if not value and regex is not None:
            found = regex.search(_stem(name))
            if found is None:
                raise CorpusError(f"speaker_pattern {speaker_pattern!r} does not match "
                                  f"utterance {name!r}")
            value = found.group(1) if regex.groups else found.group(0)
        labels.append(value or name)
    return labels


def _ordered(seed_key: torch.Tensor, count: int) -> list[int]:
    scores = rng.uniform(seed_key, (count,), dtype=torch.float64)
    return torch.argsort(scores, stable=True).tolist()


def _unknown(kind: str, asked: Sequence[str], known: Sequence[str]) -> None:
    missing = [a for a in asked if a not in set(known)]
    if missing:
        shown = ", ".join(list(dict.fromkeys(known))[:8])
        raise CorpusError(f"unknown {kind} {missing[0]!r} to hold out (known: {shown}"
                          f"{', ...' if len(set(known)) > 8 else ''})")


def split_corpus(corpus: Corpus, valid_fraction: float = 0.1, seed: int = 0, *,
                 speaker_pattern: str | None = None, speaker_column: str | None = None,
                 holdout_speakers: Sequence[str] | None = None,
                 holdout_noise_fraction: float = 0.0,
                 holdout_noises: Sequence[str] | None = None) -> CorpusSplit:
    """(train, valid) holding out whole speakers and, optionally, noise items (module
    docstring). Raises ValueError / :class:`CorpusError` with one line for bad settings."""
    if isinstance(holdout_speakers, str):  # one name, not its characters
        holdout_speakers = [holdout_speakers]
    if isinstance(holdout_noises, str):
        holdout_noises = [holdout_noises]
    labels = speaker_labels(corpus, speaker_pattern, speaker_column)
    if speaker_pattern is None and speaker_column is None:  # one group per utterance
        counts = Counter(labels)
        labels = [f"{name}#{i}" if counts[name] > 1 else name for i, name in enumerate(labels)]
    speakers = list(dict.fromkeys(labels))
    if holdout_speakers is not None:
        asked = [str(s) for s in holdout_speakers]
        _unknown("speaker", asked, speakers)
        valid_set = set(asked)
        if not valid_set or valid_set >= set(speakers):
            raise CorpusError("holdout_speakers must leave at least one speaker for training "
                              "and hold out at least one")
    else:
        if not 0.0 < float(valid_fraction) < 1.0:
            raise ValueError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
        if len(speakers) < 2:
            what = "utterance(s)" if len(speakers) == len(labels) else "speaker(s)"
            raise CorpusError(f"cannot split a corpus of {len(speakers)} {what}")
        n_valid = min(len(speakers) - 1, max(1, round(float(valid_fraction) * len(speakers))))
        order = _ordered(rng.make_key(seed), len(speakers))
        valid_set = {speakers[i] for i in order[:n_valid]}
    valid_idx = [i for i, s in enumerate(labels) if s in valid_set]
    train_idx = [i for i, s in enumerate(labels) if s not in valid_set]
    train, valid = corpus.subset(train_idx), corpus.subset(valid_idx)

    fraction = float(holdout_noise_fraction)
    if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
        raise ValueError(f"holdout_noise_fraction must lie in [0, 1), got "
                         f"{holdout_noise_fraction}")
    train_noises = valid_noises = None
    if holdout_noises is not None or fraction > 0:
        names = list(getattr(corpus, "noise_names", []) or [])
        allowed = corpus.noise_index.tolist() if hasattr(corpus, "noise_index") else []
        if not names or not allowed:
            raise CorpusError(f"this corpus ({corpus.source}) mixes no noise on the fly, so "
                              "there are no noise recordings to hold out")
        if holdout_noises is not None:
            asked = {str(n) for n in holdout_noises}
            _unknown("noise", sorted(asked), [names[i] for i in allowed]
                     + [_stem(names[i]) for i in allowed])
            held = [i for i in allowed if names[i] in asked or _stem(names[i]) in asked]
        else:
            if len(allowed) < 2:
                raise CorpusError(f"cannot hold out noises: the corpus mixes with "
                                  f"{len(allowed)} noise item(s)")
            n_held = min(len(allowed) - 1, max(1, round(fraction * len(allowed))))
            order = _ordered(rng.fold_in(rng.make_key(seed), _NOISE_STREAM), len(allowed))
            held = sorted(allowed[i] for i in order[:n_held])
        kept = [i for i in allowed if i not in set(held)]
        if not held or not kept:
            raise CorpusError("holdout_noises must leave at least one noise item for training "
                              "and hold out at least one")
        train, valid = train.noise_subset(kept), valid.noise_subset(held)
        train_noises, valid_noises = [names[i] for i in kept], [names[i] for i in held]
    settings = {"valid_fraction": valid_fraction, "seed": seed,
                "speaker_pattern": speaker_pattern, "speaker_column": speaker_column,
                "holdout_speakers": list(holdout_speakers) if holdout_speakers else None,
                "holdout_noise_fraction": fraction,
                "holdout_noises": list(holdout_noises) if holdout_noises else None}
    return CorpusSplit(train, valid, [s for s in speakers if s not in valid_set],
                       [s for s in speakers if s in valid_set], train_noises, valid_noises,
                       settings)


def exclude(corpus: Corpus, speakers: Sequence[str] = (), noises: Sequence[str] = (), *,
            speaker_pattern: str | None = None, speaker_column: str | None = None) -> Corpus:
    """``corpus`` without the utterances of ``speakers`` (labels as in :func:`split_corpus`)
    and without the noise items ``noises`` (names with or without their extension). Asking
    for an unknown speaker or noise, or leaving nothing, is a one-line error."""
    speakers, noises = [str(x) for x in speakers], [str(x) for x in noises]
    out = corpus
    if speakers:
        labels = speaker_labels(corpus, speaker_pattern, speaker_column)
        _unknown("speaker", speakers, list(dict.fromkeys(labels)))
        keep = [i for i, label in enumerate(labels) if label not in set(speakers)]
        if not keep:
            raise CorpusError("excluding those speakers leaves no utterance")
        out = out.subset(keep)
    if noises:
        names = list(getattr(corpus, "noise_names", []) or [])
        allowed = corpus.noise_index.tolist() if hasattr(corpus, "noise_index") else []
        if not names or not allowed:
            raise CorpusError(f"this corpus ({corpus.source}) mixes no noise on the fly, so "
                              "there are no noise recordings to exclude")
        _unknown("noise", sorted(set(noises)),
                 [names[i] for i in allowed] + [_stem(names[i]) for i in allowed])
        kept = [i for i in allowed if names[i] not in noises and _stem(names[i]) not in noises]
        if not kept:
            raise CorpusError("excluding those noises leaves no noise item")
        out = out.noise_subset(kept)
    return out
