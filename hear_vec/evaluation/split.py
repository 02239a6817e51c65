"""Held-out selection by group (speaker, noise recording) on plain lists of names.

An honest held-out set keeps whole *groups* out of training: every utterance of a held-out
speaker, every clip cut from a held-out noise recording. The functions here work on names
alone (file names relative to a folder, or utterance ids), so the same selection can serve
a benchmark, a trainer or a corpus:

- :func:`group_of` maps a name to its group: group 1 of ``re.search(pattern, key)`` (the
  whole match when the pattern has no group), where ``key`` is the name without its .wav / .flac
  extension (folders kept, e.g. ``p232/p232_001``); ``pattern=None`` makes every name its
  own group, labelled by its stem (no folders, no extension): an utterance-level or
  recording-level split. E.g.
  ``'^([^_]+_[^_]+)'`` maps ``arctic_aew_a0001.wav`` to ``arctic_aew`` and
  ``sbasr_spk1_snt3.wav`` to ``sbasr_spk1``.
- :func:`choose_holdout` picks the held-out groups: an explicit list (checked against the
  groups found), or a seeded fraction. For the fraction, ``k = min(G - 1, max(1,
  round(fraction * G)))`` of the G groups (sorted by name) are held out: those with the k
  smallest scores ``hear_vec.rng.uniform(key, (G,), float64)``, the stable argsort that
  :meth:`hear_vec.data.Corpus.split` uses, with ``key = make_key(seed)`` for ``stream=0``
  and ``fold_in(make_key(seed), stream)`` otherwise (speakers use stream 0 and noise
  recordings :data:`NOISE_STREAM`, so their choices are independent). With ``pattern=None``,
  ``stream=0`` and the file names of a flat folder (sorted, the order ``load_corpus`` reads
  them in), this is exactly the choice of ``Corpus.split(fraction, seed)``.

Nothing here reads files; it is pure and deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

import torch

from hear_vec import rng

__all__ = ["HoldoutSplit", "NOISE_STREAM", "group_of", "group_names", "choose_holdout",
           "parse_name_list"]

#: the ``stream`` of noise-recording choices (the value the data split uses for noises)
NOISE_STREAM = 0x401
_AUDIO_SUFFIXES = (".wav", ".flac")


def _stem(name: str) -> str:
    return PurePath(str(name).replace("\\", "/")).stem


def _strip_audio_suffix(name: str) -> str:
    text = str(name).replace("\\", "/")
    suffix = PurePath(text).suffix
    return text[: -len(suffix)] if suffix.lower() in _AUDIO_SUFFIXES else text


def group_of(name: str, pattern: str | re.Pattern[str] | None) -> str:
    """The group of ``name``: group 1 of ``pattern`` searched in ``name`` without its
    extension (the whole match when the pattern has no group), or the name's stem when
    ``pattern`` is None. Raises ValueError when the pattern is invalid or does not match."""
    if pattern is None:
        return _stem(name)
    try:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    except re.error as err:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression ({err})") from None
    match = regex.search(_strip_audio_suffix(name))
    value = None if match is None else match.group(1) if regex.groups else match.group(0)
    if not value:
        raise ValueError(f"pattern {regex.pattern!r} does not match {name!r}; every name needs "
                         f"a non-empty {'group 1' if regex.groups else 'match'}")
    return value


def group_names(names: Iterable[str], pattern: str | re.Pattern[str] | None
                ) -> dict[str, list[str]]:
    """``{group: [names in input order]}``, groups sorted by name."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_of(name, pattern), []).append(name)
    return {g: groups[g] for g in sorted(groups)}


@dataclass(frozen=True)
class HoldoutSplit:
    """Names and groups on each side. ``train`` / ``held_out`` keep the input order;
    ``train_groups`` / ``held_out_groups`` are sorted; ``groups`` maps each name to its group."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]
    train_groups: tuple[str, ...]
    held_out_groups: tuple[str, ...]
    groups: dict[str, str]

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "held_out": list(self.held_out),
                "train_groups": list(self.train_groups),
                "held_out_groups": list(self.held_out_groups)}


def parse_name_list(text: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b , c"`` (or a list of such strings) -> ``["a", "b", "c"]``; None/empty -> None."""
    if text is None:
        return None
    parts = [text] if isinstance(text, str) else list(text)
    names = [p.strip() for part in parts for p in str(part).split(",") if p.strip()]
    return names or None


def choose_holdout(names: Sequence[str], *, pattern: str | re.Pattern[str] | None = None,
                   holdout: Iterable[str] | None = None, fraction: float | None = None,
                   seed: int = 0, stream: int = 0, what: str = "group") -> HoldoutSplit:
    """Split ``names`` into (train, held out) by whole groups.

    ``holdout``: explicit group names (or, with ``pattern=None``, names / stems); they
    override ``fraction``. ``fraction`` in (0, 1): a seeded choice (module docstring).
    ``what`` names the groups in error messages ("speaker", "noise"). At least one group must
    stay on each side. Raises ValueError with one line for a bad request.
    """
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate {what} names in the list")
    grouped = group_names(names, pattern)
    all_groups = list(grouped)
    if len(all_groups) < 2:
        raise ValueError(f"holding out {what}s needs at least 2 {what}s, found "
                         f"{len(all_groups)} ({', '.join(all_groups) or 'none'})")
    chosen = parse_name_list(list(holdout)) if holdout is not None else None
    if chosen is not None:
        keys = {_stem(c) if pattern is None else _strip_audio_suffix(c) for c in chosen}
        unknown = sorted(keys - set(all_groups))
        if unknown:
            raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; found: "
                             f"{', '.join(all_groups)}")
        held = sorted(keys)
    elif fraction is not None:
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"the held-out {what} fraction must lie in (0, 1), got {fraction}")
        total = len(all_groups)
        k = min(total - 1, max(1, round(float(fraction) * total)))
        key = rng.make_key(int(seed))
        if int(stream) != 0:
            key = rng.fold_in(key, int(stream))
        scores = rng.uniform(key, (total,), dtype=torch.float64)
        order = torch.argsort(scores, stable=True).tolist()
        held = sorted(all_groups[i] for i in order[:k])
    else:
        raise ValueError(f"give the held-out {what}s as a list or a fraction")
    if len(held) >= len(all_groups):
        raise ValueError(f"every {what} would be held out; keep at least one for training")
    held_set = set(held)
    group_map = {n: g for g, members in grouped.items() for n in members}
    return HoldoutSplit(
        train=tuple(n for n in names if group_map[n] not in held_set),
        held_out=tuple(n for n in names if group_map[n] in held_set),
        train_groups=tuple(g for g in all_groups if g not in held_set),
        held_out_groups=tuple(held), groups=group_map)
