"""One source of configuration: command-line flags and key checks generated from dataclasses.

The learner configs (``hear_vec.agents.CONFIGS``: PPO, SAC, TD3) and :class:`RunConfig`
(``hear_vec.training``) are the only places where a setting is declared. From them this
module derives

- :func:`learner_fields`: the union of the learners' fields, each with the algorithms that
  have it, its type, its defaults and a help line (from the field's ``metadata["help"]`` or the
  ``name``: text table of the config class docstring);
- :func:`with_learner_fields`: a class decorator that gives ``RunConfig`` one field per learner
  field it does not declare itself (``X | None``, default None = the learner's default), so
  train.py's flags, sweep keys and ``args.json`` follow the learners with no list to keep;
- :func:`add_dataclass_flags`: one argparse flag ``--field-name`` per field (bool fields
  ``--x/--no-x``; ``tuple[X, X]`` two values, ``tuple[X, ...]`` one or more), type from the
  annotation, help and group from ``metadata`` (``help``, ``group``, ``metavar``, ``choices``,
  ``aliases``, ``nargs``, ``type``); every flag defaults to "not given" so the dataclass default
  is the only default;
- :func:`check_keys` / :func:`nearest`: an unknown or misspelt key is an error that names the
  closest valid one (``difflib.get_close_matches``); :func:`check_algo_keys`: a learner field
  set for an algorithm that does not have it is an error;
- :class:`SuggestingParserMixin`: argparse's "unrecognized arguments" becomes one line that
  names the nearest flag.

Why not tyro / simple-parsing / jsonargparse: none is installed and the project installs
offline with no new dependency; and train.py must keep the seed's flag names (``--clip-range``,
``--no-progress``, ``--noise`` as an alias of ``--noise-dir``), its flag groups, and the
project's one-line ``prog: error: ...`` messages, which those libraries format their own way.
This is ~200 lines of plain ``dataclasses`` + ``argparse``.

Library code: this module never imports ``hear_vec.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

__all__ = [
    "LEARNER_GROUP",
    "LearnerField",
    "learner_fields",
    "with_learner_fields",
    "add_dataclass_flags",
    "flag_name",
    "nearest",
    "check_keys",
    "check_algo_keys",
    "SuggestingParserMixin",
]

LEARNER_GROUP = "learner (unset: the learner's default)"

#: help lines of learner fields that their config docstrings do not describe
_LEARNER_HELP = {
    "gamma": "discount factor",
    "hidden_dims": "hidden layer widths, e.g. --hidden-dims 256 256",
    "gae_lambda": "GAE lambda",
    "clip_range": "policy ratio clip",
    "entropy_coef": "entropy bonus coefficient",
    "value_coef": "value loss coefficient",
    "rollout_steps": "steps per environment per rollout",
    "update_epochs": "passes over each rollout",
    "batch_size": "minibatch in transitions (ppo) / transitions per update (sac, td3)",
    "actor_lr": "actor learning rate",
    "critic_lr": "critic learning rate",
    "alpha_lr": "temperature learning rate",
    "max_grad_norm": "gradient clipping norm (0: off)",
    "norm_adv": "normalize advantages per minibatch",
    "adam_eps": "Adam epsilon",
    "tau": "target network update rate",
    "autotune": "learn the temperatures (else fixed at --initial-alpha)",
}


def flag_name(name: str) -> str:
    """``clip_range`` -> ``--clip-range``."""
    return "--" + name.replace("_", "-")


def nearest(key: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``key`` (difflib), or None when nothing is close."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return match[0] if match else None


def check_keys(keys: Iterable[str], valid: Iterable[str], where: str = "",
               what: str = "key", style: str = "key") -> None:
    """Raise ValueError ``[where: ]unknown <what> 'x'; did you mean 'y'?`` for the first key
    not in ``valid``. ``style="flag"`` writes names as ``--flag-name``."""
    valid = list(valid)
    show = flag_name if style == "flag" else repr
    for key in keys:
        if key in valid:
            continue
        close = nearest(key, valid)
        hint = f"; did you mean {show(close)}?" if close else ""
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}unknown {what} {show(key)}{hint}")


# ------------------------------------------------------------------------------------------
# learner fields
@dataclass(frozen=True)
class LearnerField:
    """One field of the union of the learner configs."""

    name: str
    hint: Any                       # the resolved annotation (e.g. float, tuple[int, ...])
    algos: tuple[str, ...]          # the algorithms whose config has it
    defaults: tuple[tuple[str, Any], ...]  # (algo, default) pairs
    help: str

    @property
    def tag(self) -> str:
        """``"(ppo)"``, ``"(sac, td3)"``, or ``""`` when every learner has it."""
        from hear_vec.agents import CONFIGS
        return "" if len(self.algos) == len(CONFIGS) else f"({', '.join(self.algos)})"


def _docstring_table(cls: type) -> dict[str, str]:
    """``name``: text entries of the class docstrings along the MRO (``a``/``b``: shared)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = " ".join((klass.__doc__ or "").split())
        pattern = r"((?:``\w+``/?)+): (.*?)(?=\s(?:``\w+``/?)+:\s|$)"
        for names, text in re.findall(pattern, doc):
            for name in re.findall(r"``(\w+)``", names):
                out[name] = text.strip()
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


@functools.lru_cache(maxsize=1)
def _learner_fields() -> tuple[LearnerField, ...]:
    from hear_vec.agents import CONFIGS

    order: list[str] = []
    info: dict[str, dict[str, Any]] = {}
    for algo, cls in CONFIGS.items():
        hints = typing.get_type_hints(cls)
        table = _docstring_table(cls)
        for f in dataclasses.fields(cls):
            if f.name not in info:
                order.append(f.name)
                info[f.name] = {"hint": hints[f.name], "algos": [], "defaults": [], "help": ""}
            entry = info[f.name]
            entry["algos"].append(algo)
            entry["defaults"].append((algo, _default(f)))
            text = f.metadata.get("help") or _LEARNER_HELP.get(f.name) or table.get(f.name)
            if text and not entry["help"]:
                first = re.split(r"\.\s+(?=[A-Z`])", text)[0]  # the first sentence
                entry["help"] = first.replace("``", "").rstrip(".")
    return tuple(LearnerField(name, info[name]["hint"], tuple(info[name]["algos"]),
                              tuple(info[name]["defaults"]),
                              info[name]["help"])
                 for name in order)


def learner_fields() -> dict[str, LearnerField]:
    """Every field of every learner config, in declaration order (PPO's first)."""
    return {f.name: f for f in _learner_fields()}


def check_algo_keys(algo: str, keys: Iterable[str], style: str = "key") -> None:
    """Raise ValueError when a key names a learner field that ``algo``'s config lacks."""
    fields = learner_fields()
    for key in keys:
        f = fields.get(key)
        if f is not None and algo not in f.algos:
            shown = flag_name(key) if style == "flag" else repr(key)
            raise ValueError(f"{shown} is a {', '.join(f.algos)} setting; "
                             f"{'--algo ' if style == 'flag' else ''}{algo} does not use it")


def _learner_help(f: LearnerField) -> str:
    values = {}
    for algo, default in f.defaults:
        values.setdefault(repr(default) if not isinstance(default, tuple)
                          else " ".join(map(str, default)), []).append(algo)
    if len(values) == 1:
        default = f"default {next(iter(values))}"
    else:
        default = "default " + ", ".join(f"{'/'.join(a)} {v}" for v, a in values.items())
    parts = [p for p in (f.tag, f.help) if p]
    return " ".join(parts) + f" ({default})"


def with_learner_fields(cls: type) -> type:
    """Class decorator (applied before ``@dataclass``, i.e. written below it): add one field per
    learner field that ``cls`` does not declare, typed ``X | None`` with default None (the
    learner's default), in the learner group with a generated help line."""
    annotations = dict(cls.__dict__.get("__annotations__", {}))
    for f in _learner_fields():
        if f.name in annotations:
            continue
        annotations[f.name] = f.hint | None  # a runtime object, for get_type_hints
        setattr(cls, f.name, dataclasses.field(default=None, metadata={
            "group": LEARNER_GROUP, "help": _learner_help(f), "learner": True}))
    cls.__annotations__ = annotations
    return cls


# ------------------------------------------------------------------------------------------
# argparse
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parts(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)]
    return [hint]


def _flag_spec(name: str, hint: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """argparse keywords of one field from its annotation, overridden by ``meta``."""
    parts = _parts(hint)
    spec: dict[str, Any] = {}
    if parts == [bool]:
        spec["action"] = argparse.BooleanOptionalAction
    elif len(parts) == 1 and parts[0] in (int, float, str):
        spec["type"] = parts[0]
    else:
        tuples = [p for p in parts if typing.get_origin(p) is tuple]
        if len(parts) == 1 and tuples:
            args = typing.get_args(tuples[0])
            if len(args) == 2 and args[1] is Ellipsis:
                spec.update(nargs="+", type=_positive_int if args[0] is int else args[0])
            else:
                spec.update(nargs=len(args), type=args[0])
                if len(args) == 2:
                    spec["metavar"] = ("LO", "HI")
        elif tuples:  # str | tuple[str, ...] and friends: one or more words
            spec.update(nargs="+", type=str)
        else:
            raise TypeError(f"no flag for field {name!r} of type {hint!r}")
    for key in ("type", "nargs", "metavar", "choices"):
        if key in meta:
            spec[key] = meta[key]
    return spec


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type,
                        groups: Iterable[str] = ()) -> dict[str, Any]:
    """Add a flag for every field of the dataclass ``cls`` (fields with
    ``metadata["flag"] = False`` are left out), in argument groups named by
    ``metadata["group"]`` (``groups`` fixes the order of the first ones). Flags default to
    "not given" (absent from the namespace). Returns ``{group title: argument group}``."""
    hints = typing.get_type_hints(cls)
    made: dict[str, Any] = {}
    for title in groups:
        made[title] = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("flag", True) is False:
            continue
        title = meta.get("group", "options")
        if title not in made:
            made[title] = parser.add_argument_group(title)
        spec = _flag_spec(f.name, hints[f.name], meta)
        text = meta.get("help", "")
        default = _default(f)
        if (default not in (None, "") and not isinstance(default, bool)
                and "(default" not in text and not meta.get("learner")):
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default {shown})" if text else f"default {shown}"
        names = [flag_name(f.name), *meta.get("aliases", ())]
        made[title].add_argument(*names, dest=f.name, default=argparse.SUPPRESS,
                                 help=text or None, **spec)
    return made


class SuggestingParserMixin:
    """Mix into an ``argparse.ArgumentParser`` (before it in the bases): an unrecognized
    ``--flag`` is reported as ``unknown flag --x; did you mean --y?`` through ``error()``.
    Use with ``allow_abbrev=False`` so that prefixes are not accepted silently."""

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[misc]
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix):].split()
            flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
            valid = [s for a in self._actions for s in a.option_strings  # type: ignore[attr-defined]
                     if s.startswith("--")]
            if flags:
                close = nearest(flags[0], valid)
                hint = f"; did you mean {close}?" if close else ""
                extra = f" (and {' '.join(words[1:])})" if len(words) > 1 and not close else ""
                message = f"unknown flag {flags[0]}{hint}{extra}"
        super().error(message)  # type: ignore[misc]
