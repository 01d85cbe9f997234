"""Save and load a BitNet model in one safetensors file with its ternary weights packed as TQ2_0 or TQ1_0.

Layout of the file (all tensors are safetensors tensors; the metadata header is JSON strings):

- ``<layer>.weight.tq2_0`` / ``.tq1_0``: uint8 ``(n_blocks, 66 | 54)``, the GGUF blocks of a BitLinear;
- ``<layer>.weight.scale``: float32 ``(1,)`` or ``(out,)``, the exact scale (a block of zeros keeps
  ``d = 0`` as in GGUF, so the blocks alone cannot always name it);
- every other tensor of ``state_dict()`` in ``float_dtype`` (floats) or unchanged (integers), or, with
  ``int8_embeddings``, embedding matrices as ``<key>.int8`` plus a per-row ``<key>.int8_scale``, or, with
  ``int4_embeddings``, as ``<key>.int4`` (two 4-bit codes a byte) plus ``<key>.int4_scale``, one fp16
  scale per block of 32 values of a row (GGUF Q4_0's block size, symmetric codes -8..7);
- tied tensors are stored once; ``aliases`` in the metadata names the copies.

Loading restores every tensor to its original dtype and the ternary layers exactly. Checksums are the
caller's (storage) business; writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

from agent_forge.errors import ArtifactCorruptError
from agent_forge.quant.bitlinear import TernaryWeight, bitlinear_modules, ternary_state
from agent_forge.quant.ternary_pack import (
    BLOCK_BYTES,
    PackedTernary,
    TernaryFormat,
    pack_ternary,
    unpack_ternary,
)

PACKED_FORMAT = "agent_forge.packed_ternary.v1"
FloatDtype = Literal["float32", "float16", "bfloat16"]
_BUFFER_SUFFIXES = ("weight", "ternary", "weight_scale")


@dataclass(frozen=True)
class PackedSaveConfig:
    """What to store how: ternary block type, dtype of the other floats, int8 or int4 embeddings or not."""

    ternary_format: TernaryFormat = "tq2_0"
    float_dtype: FloatDtype = "float16"
    int8_embeddings: bool = False
    int4_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.ternary_format not in BLOCK_BYTES:
            raise ValueError(f"ternary_format must be one of {sorted(BLOCK_BYTES)}")
        if self.float_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError("float_dtype must be float32, float16 or bfloat16")
        if self.int8_embeddings and self.int4_embeddings:
            raise ValueError("choose int8_embeddings or int4_embeddings, not both")


@dataclass
class PackedCheckpoint:
    """A loaded file: plain tensors (original dtypes), ternary layers, and the header metadata."""

    tensors: dict[str, Tensor]
    ternary: dict[str, TernaryWeight]
    metadata: dict[str, str] = field(default_factory=dict)


def _storage_key(tensor: Tensor) -> tuple:
    return (
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _split_aliases(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Keep the first name of every tensor that appears under several names (tied weights)."""
    first_name: dict[tuple, str] = {}
    unique: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    for key, tensor in state.items():
        storage = _storage_key(tensor)
        if storage in first_name:
            aliases[key] = first_name[storage]
        else:
            first_name[storage] = key
            unique[key] = tensor
    return unique, aliases


def _quantize_rows_int8(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: ``codes * scale`` reconstructs the row to half a step."""
    values = matrix.detach().float()
    scale = (values.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    codes = (values / scale.unsqueeze(1)).round().clamp(-127, 127).to(torch.int8)
    return codes, scale


INT4_BLOCK = 32


def _quantize_blocks_int4(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric 4-bit codes per block of 32 values of a row, two a byte; fp16 scales (rows, blocks).

    The scale is the block's absmax / 7 rounded to fp16 first, so ``code * scale`` (what loading computes)
    reconstructs every value to half a step of the stored scale.
    """
    values = matrix.detach().float()
    rows, cols = values.shape
    pad = -cols % INT4_BLOCK
    blocks = torch.nn.functional.pad(values, (0, pad)).view(rows, -1, INT4_BLOCK)
    scale = (blocks.abs().amax(dim=2) / 7.0).clamp(min=1e-6).half().float()
    codes = (blocks / scale.unsqueeze(2)).round().clamp(-8, 7).to(torch.int16) + 8
    codes = codes.view(rows, -1).to(torch.uint8)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous(), scale.half()


def _dequantize_blocks_int4(packed: Tensor, scale: Tensor, cols: int) -> Tensor:
    low, high = (packed & 0x0F).to(torch.int16), (packed >> 4).to(torch.int16)
    codes = torch.stack((low, high), dim=2).view(packed.shape[0], -1, INT4_BLOCK) - 8
    return (codes.float() * scale.float().unsqueeze(2)).view(packed.shape[0], -1)[:, :cols]


def _ternary_tensors(
    name: str, weight: TernaryWeight, fmt: TernaryFormat
) -> tuple[dict[str, Tensor], dict[str, object]]:
    scale = weight.scale.detach().float().reshape(-1).cpu()
    row_aligned = scale.numel() > 1
    values = weight.values.detach().cpu().numpy()
    packed = pack_ternary(values, scale.numpy(), fmt, row_aligned)
    tensors = {f"{name}.weight.{fmt}": torch.from_numpy(packed.data), f"{name}.weight.scale": scale}
    info = {"shape": list(packed.shape), "format": fmt, "row_aligned": row_aligned}
    return tensors, info


def _embedding_keys(model: nn.Module) -> set[str]:
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Embedding)}


def _plain_tensors(
    state: dict[str, Tensor], config: PackedSaveConfig, embedding_keys: set[str]
) -> tuple[dict[str, Tensor], dict[str, list]]:
    """Floats cast to ``float_dtype`` (or embeddings to int8 rows / int4 blocks); other dtypes unchanged.

    Also returns the quantized embeddings: ``int8`` keys and ``int4`` [key, columns] pairs."""
    out: dict[str, Tensor] = {}
    quantized: dict[str, list] = {"int8": [], "int4": []}
    dtype = getattr(torch, config.float_dtype)
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        embedding = key in embedding_keys and tensor.dim() == 2
        if config.int8_embeddings and embedding:
            out[f"{key}.int8"], out[f"{key}.int8_scale"] = _quantize_rows_int8(tensor)
            quantized["int8"].append(key)
        elif config.int4_embeddings and embedding:
            out[f"{key}.int4"], out[f"{key}.int4_scale"] = _quantize_blocks_int4(tensor)
            quantized["int4"].append([key, tensor.shape[1]])
        elif tensor.is_floating_point():
            out[key] = tensor.to(dtype).contiguous()
        else:
            out[key] = tensor.contiguous()
    return out, quantized


def _canonical_header(blob: bytes) -> bytes:
    """The same file with its JSON header keys sorted.

    safetensors writes the header from a hash map, so key order (and the file's sha256) changes from one
    process to the next; sorted keys make equal models give equal bytes. Same length: offsets hold.
    """
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > length:
        raise ValueError("canonical safetensors header is longer than the original")
    return blob[:8] + text.ljust(length, b" ") + blob[8 + length :]


def _write_atomic(tensors: dict[str, Tensor], metadata: dict[str, str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = _canonical_header(save(tensors, metadata=metadata))
    fd, tmp_name = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def save_packed(model: nn.Module, path: str | Path, config: PackedSaveConfig | None = None) -> int:
    """Write ``model`` with every BitLinear packed; returns the file's size in bytes."""
    config = config or PackedSaveConfig()
    path = Path(path)
    state = model.state_dict()
    tensors: dict[str, Tensor] = {}
    layers: dict[str, object] = {}
    for name, weight in ternary_state(model).items():
        for suffix in _BUFFER_SUFFIXES:
            state.pop(f"{name}.{suffix}", None)
        layer_tensors, layers[name] = _ternary_tensors(name, weight, config.ternary_format)
        tensors.update(layer_tensors)
    unique, aliases = _split_aliases(state)
    plain, quantized = _plain_tensors(unique, config, _embedding_keys(model))
    tensors.update(plain)
    metadata = {
        "format": PACKED_FORMAT,
        "config": json.dumps(asdict(config)),
        "ternary": json.dumps(layers),
        "dtypes": json.dumps({key: str(t.dtype).removeprefix("torch.") for key, t in unique.items()}),
        "aliases": json.dumps(aliases),
        "int8": json.dumps(quantized["int8"]),
        "int4": json.dumps(quantized["int4"]),
    }
    _write_atomic(tensors, metadata, path)
    return packed_size_bytes(path)


def packed_size_bytes(path: str | Path) -> int:
    """Bytes on disk of a packed file (header included)."""
    return Path(path).stat().st_size


def read_packed_config(path: str | Path) -> PackedSaveConfig:
    """The ``PackedSaveConfig`` a packed file was written with (from its header; no tensor is read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise ArtifactCorruptError(f"cannot read packed model {path}: {err}", "re-create the file") from err
    if metadata.get("format") != PACKED_FORMAT:
        raise ArtifactCorruptError(f"{path} is not a packed ternary model ({PACKED_FORMAT})")
    return PackedSaveConfig(**json.loads(metadata["config"]))


def _read_file(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise ArtifactCorruptError(f"cannot read packed model {path}: {err}", "re-create the file") from err
    if metadata.get("format") != PACKED_FORMAT:
        raise ArtifactCorruptError(f"{path} is not a packed ternary model ({PACKED_FORMAT})")
    return tensors, metadata


def _check_block_scales(name: str, block_scales: np.ndarray, scale: Tensor, n_blocks_per_scale: int) -> None:
    """Every non-zero block must carry the layer's scale in fp16; anything else means a damaged file."""
    expected = np.repeat(scale.numpy().astype(np.float16).astype(np.float32), n_blocks_per_scale)
    if expected.shape != block_scales.shape:
        raise ArtifactCorruptError(f"{name} has {block_scales.size} blocks, expected {expected.size}")
    ok = (block_scales == 0) | (block_scales == expected)
    if not np.all(ok):
        raise ArtifactCorruptError(f"block scales of {name} disagree with its stored scale")


def _unpack_layer(name: str, info: dict, tensors: dict[str, Tensor]) -> TernaryWeight:
    fmt = info["format"]
    data = tensors.pop(f"{name}.weight.{fmt}").numpy()
    scale = tensors.pop(f"{name}.weight.scale").float()
    packed = PackedTernary(data=data, shape=tuple(info["shape"]), fmt=fmt, row_aligned=info["row_aligned"])
    values, block_scales = unpack_ternary(packed)
    per_scale = block_scales.size // scale.numel() if info["row_aligned"] else block_scales.size
    _check_block_scales(name, block_scales, scale, per_scale)
    return TernaryWeight(values=torch.from_numpy(np.ascontiguousarray(values)), scale=scale)


def _restore_plain(tensors: dict[str, Tensor], metadata: dict[str, str]) -> dict[str, Tensor]:
    """Dequantize int8/int4 embeddings, cast back to the original dtypes, re-create tied aliases."""
    for key in json.loads(metadata["int8"]):
        codes, scale = tensors.pop(f"{key}.int8"), tensors.pop(f"{key}.int8_scale")
        tensors[key] = codes.float() * scale.unsqueeze(1)
    for key, cols in json.loads(metadata.get("int4", "[]")):
        tensors[key] = _dequantize_blocks_int4(tensors.pop(f"{key}.int4"), tensors.pop(f"{key}.int4_scale"), cols)
    dtypes = json.loads(metadata["dtypes"])
    restored = {key: tensors[key].to(getattr(torch, dtype)) for key, dtype in dtypes.items()}
    for alias, target in json.loads(metadata["aliases"]).items():
        restored[alias] = restored[target]
    return restored


def load_packed(path: str | Path) -> PackedCheckpoint:
    """Read a packed file back: plain tensors in their original dtypes and exact ternary layers."""
    path = Path(path)
    tensors, metadata = _read_file(path)
    try:
        ternary = {
            name: _unpack_layer(name, info, tensors) for name, info in json.loads(metadata["ternary"]).items()
        }
        plain = _restore_plain(tensors, metadata)
    except (KeyError, ValueError) as err:
        raise ArtifactCorruptError(f"packed model {path} is incomplete or damaged: {err}") from err
    return PackedCheckpoint(tensors=plain, ternary=ternary, metadata=metadata)


def load_packed_into(model: nn.Module, path: str | Path) -> list[str]:
    """Load a packed file into a model already converted with ``replace_linears``.

    Each BitLinear gets the stored ternary state frozen (``freeze``) and its shadow weight set to the
    dequantized values; every other tensor must match the model's state exactly (strict).
    """
    checkpoint = load_packed(path)
    layers = bitlinear_modules(model)
    absent = sorted(set(checkpoint.ternary) - set(layers))
    if absent:
        raise ValueError(f"the model has no BitLinear named {absent[:3]}; call replace_linears() first")
    for name, weight in checkpoint.ternary.items():
        layer = layers[name]
        with torch.no_grad():
            layer.weight.copy_(weight.dequantize().to(layer.weight.dtype))
        layer.freeze(weight)
    result = model.load_state_dict(checkpoint.tensors, strict=False)
    packed_keys = {f"{n}.{s}" for n in checkpoint.ternary for s in _BUFFER_SUFFIXES}
    missing = sorted(set(result.missing_keys) - packed_keys)
    if missing or result.unexpected_keys:
        raise ValueError(
            f"packed state does not fit the model: missing {missing}, "
            f"unexpected {sorted(result.unexpected_keys)}"
        )
    return list(checkpoint.ternary)


def packed_size_breakdown(path: str | Path) -> dict[str, int]:
    """Bytes of a packed file by kind: ternary blocks and scales, int8 and int4 embeddings, other tensors,
    header."""
    tensors, metadata = _read_file(Path(path))
    layers = json.loads(metadata["ternary"])
    kinds = {f"{n}.weight.{info['format']}": "ternary" for n, info in layers.items()}
    kinds |= {f"{n}.weight.scale": "ternary" for n in layers}
    for key in json.loads(metadata["int8"]):
        kinds |= {f"{key}.int8": "int8", f"{key}.int8_scale": "int8"}
    for key, _ in json.loads(metadata.get("int4", "[]")):
        kinds |= {f"{key}.int4": "int4", f"{key}.int4_scale": "int4"}
    sizes = {"ternary": 0, "int8": 0, "int4": 0, "other": 0}
    for key, tensor in tensors.items():
        sizes[kinds.get(key, "other")] += tensor.numel() * tensor.element_size()
    sizes["header"] = packed_size_bytes(path) - sum(sizes.values())
    return sizes
