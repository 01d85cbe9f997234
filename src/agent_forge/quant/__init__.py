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
from agent_forge.quant.container import (
    CompressionPlan,
    RawSpec,
    compress_tensors,
    decode_container,
    decode_model,
    read_metadata,
    write_model,
)
from agent_forge.quant.entropy import EncodedStream, decode_symbols, encode_symbols
from agent_forge.quant.fast_linear import (
    PackedTernaryLinear,
    native_kernel,
    resolve_backend,
    to_packed_inference,
)
from agent_forge.quant.model_codec import ModelCodecConfig, ModelLayout, load_tensors_into, model_tensors
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
from agent_forge.quant.planner import PlannerConfig, PlanResult, plan_compression
from agent_forge.quant.seedlm import SeedLMConfig, SeedLMEncoded, lfsr_sequence, seedlm_decode, seedlm_encode
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
from agent_forge.quant.vptq import VPTQConfig, VPTQEncoded, vptq_decode, vptq_encode

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

# Phase 8: SeedLM, VPTQ, entropy coding, the compressed container, the planner and the model codec.
__all__ += [
    "CompressionPlan",
    "EncodedStream",
    "ModelCodecConfig",
    "ModelLayout",
    "PlanResult",
    "PlannerConfig",
    "RawSpec",
    "SeedLMConfig",
    "SeedLMEncoded",
    "VPTQConfig",
    "VPTQEncoded",
    "compress_tensors",
    "decode_container",
    "decode_model",
    "decode_symbols",
    "encode_symbols",
    "lfsr_sequence",
    "load_tensors_into",
    "model_tensors",
    "plan_compression",
    "read_metadata",
    "seedlm_decode",
    "seedlm_encode",
    "vptq_decode",
    "vptq_encode",
    "write_model",
]
