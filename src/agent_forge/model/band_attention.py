"""Exact sliding-window attention on the CPU from mask-free flash-attention calls.

With a band mask, CPU flash attention scores every (query, key) pair of each block rectangle and adds the
mask; with ``is_causal`` it skips the blocks above the diagonal. This module gets the band from causal and
unmasked calls only. Queries are cut into blocks of one window; block [s, e) (n = e - s queries) sees

- its own keys [s, e): causal;
- keys [e - w, s): every query of the block sees all of them (unmasked);
- keys [s - w + 1, e - w): query a sees local key j iff j >= a, an upper triangle over the first n - 1
  queries, which is causal once queries and keys are both reversed (the last query sees none of them).

The parts' outputs are merged with their log-sum-exps. The backward calls the flash backward of each part
with the merged output and log-sum-exp, which gives exactly that part's share of the gradients. Measured
(forward + backward, one layer, n 2048, w 1024, 2 threads): fp32 129 ms against 159 ms for band-masked
quarter-window blocks and 132 ms for plain causal attention over all 2048 tokens; bf16 114 / 133 / 110 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


def exporting() -> bool:
    """True under ONNX export, torch.export, torch.compile or tracing: no data-dependent control flow."""
    return bool(
        torch.onnx.is_in_onnx_export()
        or torch.compiler.is_exporting()
        or torch.compiler.is_compiling()
        or torch.jit.is_tracing()
    )


@dataclass(frozen=True)
class Part:
    """Keys [start, end) of one query block, attended causally, fully, or reversed-causally."""

    kind: str  # "causal" | "full" | "reversed"
    start: int
    end: int


def band_plan(length: int, window: int) -> list[tuple[int, int, list[Part]]]:
    """(query start, query end, parts) for every window-sized query block."""
    plan = []
    for s in range(0, length, window):
        e = min(s + window, length)
        parts = [Part("causal", s, e)]
        if s > 0 and e - window < s:
            parts.append(Part("full", e - window, s))
        if s > 0 and e - s > 1:
            parts.append(Part("reversed", s - window + 1, e - window))
        plan.append((s, e, parts))
    return plan


def band_attention_usable(q: torch.Tensor, key_valid: torch.Tensor | None) -> bool:
    """The CPU flash kernels exist, nothing is padding, and no tracer needs plain SDPA."""
    return _FLASH is not None and q.device.type == "cpu" and key_valid is None and not exporting()


def _rev(t: torch.Tensor) -> torch.Tensor:
    return t.flip(2)


def _part_forward(qs: torch.Tensor, k: torch.Tensor, v: torch.Tensor, part: Part) -> tuple[torch.Tensor, ...]:
    """Output and log-sum-exp of one part for all queries of the block (-inf where it sees nothing)."""
    keys, values = k[:, :, part.start : part.end], v[:, :, part.start : part.end]
    if part.kind != "reversed":
        return _FLASH(qs, keys, values, 0.0, part.kind == "causal")
    out, lse = _FLASH(_rev(qs[:, :, :-1]), _rev(keys), _rev(values), 0.0, True)
    return F.pad(_rev(out), (0, 0, 0, 1)), F.pad(_rev(lse), (0, 1), value=float("-inf"))


def _merge(outs: list[torch.Tensor], lses: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One softmax over the union of the parts' keys, from each part's output and log-sum-exp."""
    if len(outs) == 1:
        return outs[0], lses[0]
    wide = _accumulation_dtype(outs[0])
    lse = torch.logsumexp(torch.stack(lses), dim=0)
    merged = sum(o.to(wide) * (part_lse - lse).exp().unsqueeze(-1) for o, part_lse in zip(outs, lses, strict=True))
    return merged.to(outs[0].dtype), lse


def _accumulation_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32 for half types (merging and summing partial gradients), the input's own otherwise."""
    return torch.promote_types(tensor.dtype, torch.float32)


class BandAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(D) over i - w < j <= i) v for q, k, v (B, H, N, D) on the CPU."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
        plan = band_plan(q.shape[2], window)
        outs, lses = [], []
        for s, e, parts in plan:
            pieces = [_part_forward(q[:, :, s:e], k, v, part) for part in parts]
            out, lse = _merge([p[0] for p in pieces], [p[1] for p in pieces])
            outs.append(out)
            lses.append(lse)
        out, lse = torch.cat(outs, dim=2), torch.cat(lses, dim=2)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan = plan
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        grads = [torch.zeros(t.shape, dtype=_accumulation_dtype(t)) for t in (q, k, v)]
        for s, e, parts in ctx.plan:
            block = [t[:, :, s:e] for t in (grad, q, out)] + [lse[:, :, s:e]]
            for part in parts:
                _accumulate(grads, block, k, v, part, s, e)
        return grads[0].to(q.dtype), grads[1].to(k.dtype), grads[2].to(v.dtype), None


def _accumulate(grads: list[torch.Tensor], block: list[torch.Tensor], k: torch.Tensor, v: torch.Tensor,
                part: Part, s: int, e: int) -> None:
    """Add one part's flash backward (given the merged output and log-sum-exp) into dq, dk, dv."""
    grad_out, qs, out, lse = block
    keys, values = k[:, :, part.start : part.end], v[:, :, part.start : part.end]
    if part.kind == "reversed":
        dq, dk, dv = _FLASH_BACKWARD(_rev(grad_out[:, :, :-1]), _rev(qs[:, :, :-1]), _rev(keys), _rev(values),
                                     _rev(out[:, :, :-1]), _rev(lse[:, :, :-1]), 0.0, True)
        dq, dk, dv, e = _rev(dq), _rev(dk), _rev(dv), e - 1
    else:
        dq, dk, dv = _FLASH_BACKWARD(grad_out, qs, keys, values, out, lse, 0.0, part.kind == "causal")
    grads[0][:, :, s:e] += dq
    grads[1][:, :, part.start : part.end] += dk
    grads[2][:, :, part.start : part.end] += dv
