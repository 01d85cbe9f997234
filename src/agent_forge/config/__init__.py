"""Configuration: pydantic schema, shipped presets and their loading."""

from agent_forge.config.loader import available_presets, config_diff, load_config, parse_override
from agent_forge.config.schema import PHASE_NAMES, PipelineConfig

__all__ = ["PHASE_NAMES", "PipelineConfig", "available_presets", "config_diff", "load_config", "parse_override"]
