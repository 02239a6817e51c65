"""Scale-invariant signal-to-distortion ratio (SI-SDR), zero-mean, batched with ``lengths``.

Same definition (and the same placement of ``eps = finfo(dtype).eps``) as torchmetrics'
``scale_invariant_signal_distortion_ratio(preds, target, zero_mean=True)``; means and sums run
over each row's first ``lengths[i]`` samples only, so a padded row scores like its unpadded self.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hear_vec._checks import check_audio, check_lengths, check_same_shape

__all__ = ["si_sdr"]


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

    if lengths is None:
        target = reference - reference.mean(dim=-1, keepdim=True)
        preds = estimate - estimate.mean(dim=-1, keepdim=True)
    else:
        idx = torch.arange(estimate.shape[-1], device=estimate.device)
        mask = (idx < lengths.unsqueeze(-1)).to(estimate.dtype)  # (..., time)
        count = lengths.clamp_min(1).to(estimate.dtype).unsqueeze(-1)
        target = (reference - (reference * mask).sum(-1, keepdim=True) / count) * mask
        preds = (estimate - (estimate * mask).sum(-1, keepdim=True) / count) * mask

    alpha = ((preds * target).sum(-1, keepdim=True) + eps) / (
        target.square().sum(-1, keepdim=True) + eps)
    target_scaled = alpha * target
    noise = target_scaled - preds  # zero beyond each row's length: both terms are
    val = (target_scaled.square().sum(-1) + eps) / (noise.square().sum(-1) + eps)
    return 10 * torch.log10(val)
