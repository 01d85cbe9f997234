"""MuonGrokfast optimizer (decision D11): Grokfast prefilter, Muon for hidden matrices, AdamW for the rest,
QK-clip for attention, and the per-phase presets."""

from agent_forge.optim.config import MuGrokConfig
from agent_forge.optim.factory import build_optimizer
from agent_forge.optim.grokfast import grokfast_filter
from agent_forge.optim.muon_grokfast import MuonGrokfast
from agent_forge.optim.newton_schulz import match_rms_adamw_scale, orthogonalize
from agent_forge.optim.qk_clip import QKClipTarget, apply_qk_clip, qk_clip_
from agent_forge.optim.routing import route_named_parameters, route_parameter

__all__ = [
    "MuGrokConfig",
    "MuonGrokfast",
    "QKClipTarget",
    "apply_qk_clip",
    "build_optimizer",
    "grokfast_filter",
    "match_rms_adamw_scale",
    "orthogonalize",
    "qk_clip_",
    "route_named_parameters",
    "route_parameter",
]
