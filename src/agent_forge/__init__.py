"""Agent Forge: build small language models on your own machine, in eight phases."""

__version__ = "0.1.0"
