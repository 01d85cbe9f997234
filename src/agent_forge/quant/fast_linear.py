"""Inference-only ternary linear layer on 2-bit packed weights with integer arithmetic on the CPU.

``PackedTernaryLinear`` keeps the weights as 2-bit codes (``t + 1``, four a byte, rows padded to 64)
and one float scale per output row. Its forward quantizes each token to int8 exactly as
:class:`~agent_forge.quant.bitlinear.BitLinear` does, takes integer dot products against the codes and
rescales once per output. Backends, best first:

- ``"c"``: a small C kernel (AVX-512 VNNI, AVX2 or portable C) built with the machine's compiler on first
  use (``_kernels/build.py``) and called through ctypes;
- ``"torch-int8"``: when no compiler is available, int8 weights and ``torch._int_mm`` (int8 x int8 ->
  int32 on the CPU; an exact integer-valued float matmul on other devices). Slower, 8 bits a weight in
  memory, still integer arithmetic.
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from agent_forge.quant._kernels.build import KernelBuildError, LayerArgs, TernaryKernel, load_kernel
from agent_forge.quant.bitlinear import BitLinear, TernaryWeight, bitlinear_modules, quantize_activations

Backend = Literal["auto", "c", "torch-int8"]
ROW_MULTIPLE = 64
_F32 = torch.float32
_CHUNKS = (256, 128, 64)


def padded_columns(in_features: int) -> int:
    return -(-in_features // ROW_MULTIPLE) * ROW_MULTIPLE


def _chunk_schedule(k_pad: int) -> list[int]:
    """Chunks of 256, then at most one 128 and one 64: the order the C kernel walks a row."""
    schedule = [256] * (k_pad // 256)
    rest = k_pad % 256
    for chunk in (128, 64):
        if rest >= chunk:
            schedule.append(chunk)
            rest -= chunk
    return schedule


def pack_kernel_codes(values: np.ndarray) -> np.ndarray:
    """Ternary (out, in) int8 -> (out, k_pad / 4) uint8 in the kernel's layout (see ternary_gemv.c)."""
    n_rows, n_cols = values.shape
    if values.size and (values.min() < -1 or values.max() > 1):
        raise ValueError("kernel codes take ternary values in {-1, 0, +1} only")
    k_pad = padded_columns(n_cols)
    codes = np.ones((n_rows, k_pad), dtype=np.uint8)
    codes[:, :n_cols] = (values.astype(np.int16) + 1).astype(np.uint8)
    parts, start = [], 0
    for chunk in _chunk_schedule(k_pad):
        quarters = codes[:, start : start + chunk].reshape(n_rows, 4, chunk // 4)
        parts.append(quarters[:, 0] | quarters[:, 1] << 2 | quarters[:, 2] << 4 | quarters[:, 3] << 6)
        start += chunk
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def unpack_kernel_codes(codes: np.ndarray, in_features: int) -> np.ndarray:
    """Inverse of :func:`pack_kernel_codes`: (out, in) int8 ternary values."""
    n_rows = codes.shape[0]
    k_pad = codes.shape[1] * 4
    parts, start = [], 0
    for chunk in _chunk_schedule(k_pad):
        block = codes[:, start : start + chunk // 4]
        quarters = [(block >> shift) & 3 for shift in (0, 2, 4, 6)]
        parts.append(np.stack(quarters, axis=1).reshape(n_rows, chunk))
        start += chunk // 4
    values = np.concatenate(parts, axis=1).astype(np.int8) - np.int8(1)
    return np.ascontiguousarray(values[:, :in_features])


@functools.lru_cache(maxsize=1)
def native_kernel() -> TernaryKernel | None:
    """The C kernel for this machine, or None (with one warning saying why) when it cannot be built."""
    try:
        return load_kernel()
    except KernelBuildError as err:
        warnings.warn(
            f"ternary C kernel unavailable ({err}); PackedTernaryLinear falls back to torch int8 matmul, "
            "which is slower. Install gcc or clang (or set CC) for the fast path.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def resolve_backend(backend: Backend = "auto") -> str:
    """``"c"`` when the kernel loads (required if asked for explicitly), else ``"torch-int8"``."""
    if backend == "torch-int8":
        return backend
    if backend not in ("auto", "c"):
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'c' or 'torch-int8'")
    if native_kernel() is not None:
        return "c"
    if backend == "c":
        raise KernelBuildError("the C backend was requested but the kernel could not be built")
    return "torch-int8"


class PackedTernaryLinear(nn.Module):
    """Drop-in inference replacement for a (frozen) BitLinear: 2-bit codes, int8 activations, int32 dots.

    Buffers: ``codes`` (out, k_pad / 4) uint8, ``weight_scale`` (out,) float32, ``bias`` (out,) or None.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        eps: float = 1e-5,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.eps = in_features, out_features, float(eps)
        self.k_pad = padded_columns(in_features)
        self.register_buffer("codes", torch.ones(out_features, self.k_pad // 4, dtype=torch.uint8) * 0x55)
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.backend = resolve_backend(backend)
        kernel = native_kernel() if self.backend == "c" else None
        self._kernel: TernaryKernel | None = kernel
        self._bound: tuple[Tensor | None, ...] = ()
        self._layer_args: LayerArgs | None = None
        self._layer_args_address = 0
        self._entry: Any = None
        self._int8_cache: tuple[int, Tensor] | None = None

    def __getstate__(self) -> dict:
        """Copies and pickles drop the ctypes handles (they cannot be copied); ``__setstate__`` reloads."""
        state = dict(self.__dict__)
        state.update(_kernel=None, _bound=(), _layer_args=None, _layer_args_address=0, _entry=None,
                     _int8_cache=None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.backend == "c":
            self._kernel = native_kernel()
            self.backend = "c" if self._kernel is not None else "torch-int8"

    def use_kernel(self, kernel: TernaryKernel) -> None:
        """Compute with a specific build of the C kernel (e.g. the AVX2 or portable one, for tests)."""
        self._kernel, self._bound, self.backend = kernel, (), "c"

    @classmethod
    def from_ternary(
        cls, weight: TernaryWeight, bias: Tensor | None = None, eps: float = 1e-5, backend: Backend = "auto"
    ) -> PackedTernaryLinear:
        """Pack int8 ternary values (out, in) and a scale of shape (1,) or (out,)."""
        out_features, in_features = weight.values.shape
        layer = cls(in_features, out_features, bias=bias is not None, eps=eps, backend=backend)
        codes = pack_kernel_codes(weight.values.detach().cpu().numpy())
        layer.codes.copy_(torch.from_numpy(codes))
        layer.weight_scale.copy_(weight.scale.detach().float().reshape(-1).expand(out_features))
        if bias is not None:
            layer.bias.copy_(bias.detach().float())
        return layer

    @classmethod
    def from_bitlinear(cls, layer: BitLinear, backend: Backend = "auto") -> PackedTernaryLinear:
        if layer.config.activation_bits != 8:
            raise ValueError("PackedTernaryLinear computes with 8-bit activations only")
        packed = cls.from_ternary(layer.ternary_weight(), layer.bias, layer.config.eps, backend)
        return packed.to(layer.weight.device)

    def ternary_weight(self) -> TernaryWeight:
        """Decode the codes back to int8 values and the per-row scale."""
        values = unpack_kernel_codes(self.codes.cpu().numpy(), self.in_features)
        return TernaryWeight(values=torch.from_numpy(values), scale=self.weight_scale.clone())

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("PackedTernaryLinear is inference-only; train the BitLinear model instead")
        shape = x.shape
        if shape[-1] != self.in_features:
            raise ValueError(f"expected last dimension {self.in_features}, got input of shape {tuple(shape)}")
        native = self._native_args()
        if native and x.is_cpu and x.dtype == _F32 and x.is_contiguous():
            return self._forward_native(x, native)
        flat = x.reshape(-1, self.in_features).float().contiguous()
        out = self._forward_native(flat, native) if native and x.is_cpu else self._forward_int8(flat)
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def _native_args(self) -> int:
        """Address of the bound C arguments, or 0 when the C path cannot run (no kernel, buffers off CPU).

        Re-binds whenever a buffer object was replaced (``.to()``, assignment); in-place loads such as
        ``load_state_dict`` keep the buffers and their addresses. Buffers are read from ``_buffers``
        because ``Module.__getattr__`` costs about 0.7 us a lookup at batch 1.
        """
        buffers = self._buffers
        bound = self._bound
        if (bound and buffers["codes"] is bound[0] and buffers["weight_scale"] is bound[1]
                and buffers["bias"] is bound[2]):
            return self._layer_args_address
        return self._bind((buffers["codes"], buffers["weight_scale"], buffers["bias"]))

    def _bind(self, current: tuple[Tensor | None, ...]) -> int:
        codes, scale, bias = current
        tensors = [t for t in current if t is not None]
        usable = self._kernel is not None and all(t.is_cpu and t.is_contiguous() for t in tensors)
        usable = usable and codes.dtype == torch.uint8 and scale.dtype == _F32
        usable = usable and (bias is None or bias.dtype == _F32)
        self._layer_args = None
        if usable:
            self._layer_args = LayerArgs(
                codes.data_ptr(),
                scale.data_ptr(),
                None if bias is None else bias.data_ptr(),
                self.in_features,
                self.out_features,
                self.k_pad,
                self.eps,
            )
        self._layer_args_address = ctypes.addressof(self._layer_args) if usable else 0
        self._entry = self._kernel.library.tg_ternary_linear_layer if usable else None
        self._bound = current
        return self._layer_args_address

    def _forward_native(self, x: Tensor, layer_args: int) -> Tensor:
        """One C call: quantize the tokens, integer dots against the codes, rescale, add the bias.

        At batch 1 the fixed costs are most of the time, so the output is allocated from plain ints (about
        1 us less than from a shape slice) and the ctypes entry point is looked up once, at bind time."""
        rows = x.numel() // self.in_features
        out = torch.empty(rows, self.out_features, dtype=_F32)
        status = self._entry(layer_args, x.data_ptr(), rows, out.data_ptr())
        if status != 0:
            raise RuntimeError(f"ternary kernel failed (status {status}) for input of shape {tuple(x.shape)}")
        return out if x.dim() == 2 else out.view(*x.shape[:-1], self.out_features)

    def _int8_matrix(self) -> Tensor:
        """(in, out) int8 weights for ``torch._int_mm``, decoded from the codes (again after they change)."""
        codes = self._buffers["codes"]
        key = codes._version
        cached = self._int8_cache
        if cached is None or cached[0] != key or cached[1].device != codes.device:
            values = torch.from_numpy(unpack_kernel_codes(codes.cpu().numpy(), self.in_features))
            cached = (key, values.t().contiguous().to(codes.device))
            self._int8_cache = cached
        return cached[1]

    def _forward_int8(self, flat: Tensor) -> Tensor:
        codes, x_scale = quantize_activations(flat, 8, self.eps)
        weight = self._int8_matrix()
        if flat.device.type == "cpu":
            dots = torch._int_mm(codes.to(torch.int8), weight).float()
        else:
            dots = codes @ weight.float()  # integer-valued and below 2**24: exact in float32
        out = dots * (self.weight_scale / x_scale)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, backend={self.backend}"


def to_packed_inference(model: nn.Module, backend: Backend = "auto") -> list[str]:
    """Replace every BitLinear of ``model`` by a PackedTernaryLinear in place; returns their names."""
    names = []
    for name, layer in bitlinear_modules(model).items():
        if not name:
            raise ValueError("the model itself is a BitLinear; use PackedTernaryLinear.from_bitlinear")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PackedTernaryLinear.from_bitlinear(layer, backend))
        names.append(name)
    return names
