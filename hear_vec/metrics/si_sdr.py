"""Scale-invariant signal-to-distortion ratio (SI-SDR), zero-mean, batched with ``lengths``.

Same definition (and the same placement of ``eps = finfo(dtype).eps``) as torchmetrics'
``scale_invariant_signal_distortion_ratio(preds, target, zero_mean=True)``; means and sums run
over each row's first ``lengths[i]`` samples only, so a padded row scores like its unpadded self.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from hear_vec._checks import check_audio, check_lengths, check_same_shape
from hear_vec.dsp import time_mask, zero_beyond

__all__ = ["si_sdr", "si_sdr_reference", "si_sdr_from_reference", "SiSdrReference"]


def si_sdr(estimate: Tensor, reference: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Zero-mean SI-SDR in dB of ``estimate`` against ``reference``, both (..., time).

    With s = reference - mean(reference), s_hat = estimate - mean(estimate) over the valid
    samples t < L of each row and eps = finfo(dtype).eps::

        alpha  = (<s_hat, s> + eps) / (<s, s> + eps)
        SI-SDR = 10 log10( (||alpha s||^2 + eps) / (||alpha s - s_hat||^2 + eps) )

    Args:
        estimate: float tensor (..., time), the processed signal.
        reference: float tensor of the same shape, dtype and device, the clean signal.
        lengths: optional integer tensor (...,) of valid samples per row (default: all).

    Returns:
        Tensor (...,) in dB, dtype of the inputs. All-zero (or empty) rows give 0 dB.
    """
    estimate = check_audio("estimate", estimate)
    reference = check_audio("reference", reference)
    check_same_shape(estimate, reference, ("estimate", "reference"))
    lengths = check_lengths(lengths, estimate)
    eps = torch.finfo(estimate.dtype).eps

    target = _zero_mean(reference, lengths)
    preds = _zero_mean(estimate, lengths)
    alpha = ((preds * target).sum(-1, keepdim=True) + eps) / (
        target.square().sum(-1, keepdim=True) + eps)
    target_scaled = alpha * target
    noise = target_scaled - preds  # zero beyond each row's length: both terms are
    val = (target_scaled.square().sum(-1) + eps) / (noise.square().sum(-1) + eps)
    return 10 * torch.log10(val)


def _zero_mean(x: Tensor, lengths: Tensor | None, zero_padded: bool = False) -> Tensor:
    """x (..., time) minus its mean over each row's first ``lengths`` (...,) samples, zero
    beyond them (whatever x holds there); x minus its mean when lengths is None.
    ``zero_padded``: x is already zero beyond lengths (the sum needs no masking)."""
    if lengths is None:
        return x - x.mean(dim=-1, keepdim=True)
    count = lengths.clamp_min(1).to(x.dtype).unsqueeze(-1)
    mean = (x if zero_padded else zero_beyond(x, lengths)).sum(-1, keepdim=True) / count
    return torch.where(time_mask(lengths, x.shape[-1], x), x - mean, 0.0)


class SiSdrReference(NamedTuple):
    """The reference side of SI-SDR for rows (B, T): target s = reference - mean (over the
    valid samples, zero beyond them) and <s, s> + eps (B, 1). Reused for every estimate of the
    same rows (the steps of an episode score against one clean segment)."""

    target: Tensor
    energy: Tensor


def si_sdr_reference(reference: Tensor, lengths: Tensor | None = None, *,
                     zero_padded: bool = False) -> SiSdrReference:
    """:class:`SiSdrReference` of ``reference`` (..., time) (rows flattened).
    ``zero_padded=True``: the caller promises ``reference`` is already zero beyond
    ``lengths`` (a masking pass is skipped; the result is the same for such input)."""
    reference = check_audio("reference", reference)
    lengths = check_lengths(lengths, reference)
    time = reference.shape[-1]
    ref = reference.reshape(-1, time)
    eps = torch.finfo(ref.dtype).eps
    target = _zero_mean(ref, None if lengths is None else lengths.reshape(-1), zero_padded)
    return SiSdrReference(target, target.square().sum(-1, keepdim=True) + eps)


def si_sdr_from_reference(reference: SiSdrReference, estimate: Tensor,
                          lengths: Tensor | None = None, *, zero_padded: bool = False) -> Tensor:
    """SI-SDR of ``estimate`` (..., time) against a :func:`si_sdr_reference` of the same rows
    and lengths; (...,) in dB. The formula of :func:`si_sdr`, with ||alpha s||^2 taken as
    alpha^2 <s, s> (equal up to rounding): the reference side is not recomputed.
    ``zero_padded=True``: ``estimate`` is already zero beyond ``lengths`` (see
    :func:`si_sdr_reference`)."""
    estimate = check_audio("estimate", estimate)
    lengths = check_lengths(lengths, estimate)
    time = estimate.shape[-1]
    est = estimate.reshape(-1, time)
    if est.shape != reference.target.shape or est.dtype != reference.target.dtype:
        raise ValueError(f"estimate rows {tuple(est.shape)} {est.dtype} do not match the "
                         f"reference's {tuple(reference.target.shape)} "
                         f"{reference.target.dtype}")
    eps = torch.finfo(est.dtype).eps
    preds = _zero_mean(est, None if lengths is None else lengths.reshape(-1), zero_padded)
    target = reference.target
    energy = reference.energy - eps  # <s, s>
    alpha = ((preds * target).sum(-1, keepdim=True) + eps) / reference.energy
    noise = (alpha * target).sub_(preds) if not preds.requires_grad else alpha * target - preds
    val = ((alpha.square() * energy).squeeze(-1) + eps) / (noise.square().sum(-1) + eps)
    return (10 * torch.log10(val)).reshape(estimate.shape[:-1])
