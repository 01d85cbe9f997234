"""Quantization: BitNet b1.58 layers, GGUF-compatible ternary packing, packed files, a fast CPU path.

Phase 4 converts a model with ``replace_linears`` and trains it quantization-aware; ``save_packed`` /
``load_packed_into`` store it with TQ1_0/TQ2_0 blocks; ``to_packed_inference`` swaps in the integer
kernel for inference. Phase 8's stages (SeedLM, VPTQ, entropy coding) live in their own modules.
"""

from agent_forge.quant.bitlinear import (
    BitLinear,
    BitLinearConfig,
    TernaryWeight,
    absmean_scale,
    bitlinear_from,
    bitlinear_modules,
    dequantized_activations,
    freeze_ternary,
    quantize_activations,
    quantize_weight,
    replace_linears,
    set_ramp,
    straight_through,
    ternarize,
    ternary_state,
)
from agent_forge.quant.fast_linear import (
    PackedTernaryLinear,
    native_kernel,
    resolve_backend,
    to_packed_inference,
)
from agent_forge.quant.packed_io import (
    PACKED_FORMAT,
    PackedCheckpoint,
    PackedSaveConfig,
    load_packed,
    load_packed_into,
    packed_size_breakdown,
    packed_size_bytes,
    save_packed,
)
from agent_forge.quant.packed_model import absorb_storage_precision, packed_logits_gap
from agent_forge.quant.ternary_pack import (
    PackedTernary,
    TernaryFormat,
    pack_ternary,
    pack_tq1_0,
    pack_tq2_0,
    unpack_ternary,
    unpack_tq1_0,
    unpack_tq2_0,
)

__all__ = [
    "PACKED_FORMAT",
    "BitLinear",
    "BitLinearConfig",
    "PackedCheckpoint",
    "PackedSaveConfig",
    "PackedTernary",
    "PackedTernaryLinear",
    "TernaryFormat",
    "TernaryWeight",
    "absmean_scale",
    "absorb_storage_precision",
    "bitlinear_from",
    "bitlinear_modules",
    "dequantized_activations",
    "freeze_ternary",
    "load_packed",
    "load_packed_into",
    "native_kernel",
    "pack_ternary",
    "pack_tq1_0",
    "pack_tq2_0",
    "packed_logits_gap",
    "packed_size_breakdown",
    "packed_size_bytes",
    "quantize_activations",
    "quantize_weight",
    "replace_linears",
    "resolve_backend",
    "save_packed",
    "set_ramp",
    "straight_through",
    "ternarize",
    "ternary_state",
    "to_packed_inference",
    "unpack_ternary",
    "unpack_tq1_0",
    "unpack_tq2_0",
]
