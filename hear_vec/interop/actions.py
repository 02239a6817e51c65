"""Action checks shared by the Gymnasium and TorchRL views of :class:`~hear_vec.env.DenoiseEnv`.

Two layouts of one action row, both read from the env's ``action_spec`` (M methods, C knobs
inside ``[knob_low, knob_high]``; M grows by one when the env offers a stop/keep action):

- **vector** ``[N, 1 + C]`` float: ``(method id, knob_1 .. knob_C)``, the seed's layout. The
  method coordinate is a continuous relaxation inside ``[0, M - 1]``: the env rounds it to the
  nearest id (half to even), as the seed did, so a non-integer value inside the range is a
  valid action (it lies in the declared ``Box``; rejecting it would reject
  ``action_space.sample()``).
- **hybrid** ``method [N]`` integer in ``0 .. M - 1`` and ``knobs [N, C]`` float. A
  non-integer or out-of-range method id is always an error here (the space is discrete).

Checks (each failure is one ``ValueError`` line naming the first offending row and column):
shape, dtype (real numbers only; no bool, complex or object), NaN / ±inf, and values outside
the declared bounds. Out-of-bounds values raise by default (``clip=False``); with
``clip=True`` they are clamped into the bounds first. The env clamps knobs and the method id
itself, so clamping changes nothing it would not have done — the option only turns the error
off for learners that emit unclipped Gaussian samples. Stable-Baselines3 (which clips ``Box``
actions to the bounds before ``step``) and TorchRL's ``TanhNormal`` heads (which map into the
bounds) never trip the default check.

The value checks cost one device→host read of one bool per step (a single fused reduction);
``validate=False`` skips them (shape and dtype, which are host-side, are always checked).
The result is float32 on the env's device and bit-identical to what ``DenoiseEnv.step`` would
receive from the same values given directly (in-bounds values are never modified).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from hear_vec.env.spaces import ActionSpec

__all__ = ["ActionBounds", "as_tensor", "check_vector_action", "check_hybrid_action"]


class ActionBounds:
    """Bounds of the vector layout: ``low = (0, *knob_low)``, ``high = (M - 1, *knob_high)``,
    kept as float32 numpy arrays and device tensors."""

    def __init__(self, spec: ActionSpec, device: torch.device) -> None:
        self.spec = spec
        self.num_methods = int(spec.num_methods)
        self.num_knobs = int(spec.num_knobs)
        self.low = np.array([0.0, *spec.knob_low], dtype=np.float32)
        self.high = np.array([float(self.num_methods - 1), *spec.knob_high], dtype=np.float32)
        self.low_t = torch.as_tensor(self.low, device=device)
        self.high_t = torch.as_tensor(self.high, device=device)
        self.device = device


def _describe(value: Any) -> str:
    if isinstance(value, (Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def as_tensor(value: Any, name: str, device: torch.device) -> Tensor:
    """A numpy array / tensor / nested list as a tensor on ``device`` (no copy when it is
    already a tensor there); non-numeric input is a one-line ValueError."""
    if isinstance(value, Tensor):
        t = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric array, got {_describe(value)} ({exc})"
                             ) from None
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got {_describe(value)}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or _is_int(t)):
        raise ValueError(f"{name} must hold real numbers (float or integer), got "
                         f"{_describe(value)}")
    return t.to(device)


def _is_int(t: Tensor) -> bool:
    return t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _first_bad(mask: Tensor) -> tuple[int, ...]:
    """Index of the first True entry (host read; error path only)."""
    return tuple(int(i) for i in mask.nonzero()[0].tolist())


def _float_problem(a: Tensor, low: Tensor, high: Tensor, name: str, clip: bool) -> str | None:
    """First problem of a float tensor [N, K] (host reads; error path only)."""
    finite = torch.isfinite(a)
    if not bool(finite.all()):
        row, col = _first_bad(~finite)
        return f"{name} must be finite: row {row}, column {col} is {float(a[row, col])}"
    inside = (a >= low) & (a <= high)
    if not clip and not bool(inside.all()):
        row, col = _first_bad(~inside)
        return (f"{name} out of bounds: row {row}, column {col} is {float(a[row, col]):.6g}, "
                f"allowed [{float(low[col]):.6g}, {float(high[col]):.6g}] (pass "
                "clip_actions=True to clamp instead)")
    return None


def _float_ok(a: Tensor, low: Tensor, high: Tensor, clip: bool) -> Tensor:
    """0-d bool on the device: finite everywhere (and inside the bounds unless clipping)."""
    finite = torch.isfinite(a)
    return finite.all() if clip else (finite & (a >= low) & (a <= high)).all()


def check_vector_action(action: Any, bounds: ActionBounds, num_envs: int, *, clip: bool = False,
                        validate: bool = True, name: str = "action") -> Tensor:
    """The vector layout ``[num_envs, 1 + C]`` checked and converted to float32 on the env's
    device (see the module docstring)."""
    width = 1 + bounds.num_knobs
    t = as_tensor(action, name, bounds.device)
    if tuple(t.shape) != (num_envs, width):
        raise ValueError(f"{name} must have shape ({num_envs}, {width}) = (num_envs, method id + "
                         f"{bounds.num_knobs} knobs), got {tuple(t.shape)}")
    a = t.to(torch.float32)
    if validate and not bool(_float_ok(a, bounds.low_t, bounds.high_t, clip)):  # one host read
        raise ValueError(_float_problem(a, bounds.low_t, bounds.high_t, name, clip))
    return a.clamp(bounds.low_t, bounds.high_t) if clip else a


def _method_problem(m: Tensor, mf: Tensor, num_methods: int) -> str | None:
    """First problem of the method ids (host reads; error path only)."""
    if m.is_floating_point():
        bad = ~torch.isfinite(mf) | (mf != mf.round())
        if bool(bad.any()):
            (row,) = _first_bad(bad)
            return f"action['method'] must be an integer method id: row {row} is {float(mf[row])}"
    bad = (mf < 0) | (mf > num_methods - 1)
    if bool(bad.any()):
        (row,) = _first_bad(bad)
        return (f"action['method'] out of range: row {row} is {int(mf[row])}, allowed "
                f"0 .. {num_methods - 1}")
    return None


def check_hybrid_action(method: Any, knobs: Any, bounds: ActionBounds, num_envs: int, *,
                        clip: bool = False, validate: bool = True) -> Tensor:
    """The hybrid layout (``method [N]`` integer ids, ``knobs [N, C]``) checked and packed into
    the vector layout ``[N, 1 + C]`` float32 (the id as an exact float). The method id is never
    clamped: an id outside ``0 .. M - 1`` is always an error."""
    m = as_tensor(method, "action['method']", bounds.device)
    k = as_tensor(knobs, "action['knobs']", bounds.device)
    if m.dim() == 2 and m.shape[-1] == 1:
        m = m.squeeze(-1)
    if tuple(m.shape) != (num_envs,):
        raise ValueError(f"action['method'] must have shape ({num_envs},), got {tuple(m.shape)}")
    if tuple(k.shape) != (num_envs, bounds.num_knobs):
        raise ValueError(f"action['knobs'] must have shape ({num_envs}, {bounds.num_knobs}), "
                         f"got {tuple(k.shape)}")
    mf = m.to(torch.float32)
    kf = k.to(torch.float32)
    low, high = bounds.low_t[1:], bounds.high_t[1:]
    if validate:
        ok = ((mf == mf.round()) & (mf >= 0) & (mf <= bounds.num_methods - 1)).all()
        ok = ok & _float_ok(kf, low, high, clip)
        if not bool(ok):  # one host read per step
            raise ValueError(_method_problem(m, mf, bounds.num_methods)
                             or _float_problem(kf, low, high, "action['knobs']", clip))
    if clip:
        kf = kf.clamp(low, high)
    return torch.cat([mf.unsqueeze(-1), kf], dim=-1)
