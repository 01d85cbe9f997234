"""Grokfast-EMA gradient prefilter (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow
Gradients").

The EMA ``mu`` is a low-pass filter of the gradient sequence; adding ``lambda * mu`` back amplifies the slow
component that drives generalisation while the fast, noisy component keeps weight 1. (The reference
implementation of this project added the *difference* from the EMA, a high-pass filter: the opposite.)
"""

from __future__ import annotations

from torch import Tensor


def grokfast_filter(grad: Tensor, ema: Tensor | None, alpha: float, lam: float) -> tuple[Tensor, Tensor]:
    """Return ``(g_hat, mu)`` with ``mu <- alpha*mu + (1-alpha)*g`` and ``g_hat = g + lam*mu``.

    ``ema`` is updated in place. On the first call (``ema is None``) the EMA starts at the gradient itself,
    as in the paper's code, so the filter does not spend ~1/(1-alpha) steps warming up from zero. ``grad``
    is never modified, so gradient norms logged after the step still show the raw gradient.
    """
    if ema is None:
        ema = grad.detach().clone()
    else:
        ema.mul_(alpha).add_(grad, alpha=1.0 - alpha)
    return grad.add(ema, alpha=lam), ema
