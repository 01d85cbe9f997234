"""An OpenAI-compatible HTTP endpoint for a registered model or an edge bundle (``agent-forge serve``).

Modules: ``api`` (request parsing, limits, the chat template, response shapes), ``generation`` (the
prompt for each mode, decoding through the engine, stop strings and streamed text) and ``http`` (the
standard library's threading HTTP server answering OpenAI's routes).
"""

from agent_forge.serve.api import MODES, ApiError, Job, Limits, render_chat
from agent_forge.serve.generation import Backend, bundle_backend, model_backend
from agent_forge.serve.http import ForgeServer, running

__all__ = ["MODES", "ApiError", "Backend", "ForgeServer", "Job", "Limits", "bundle_backend", "model_backend",
           "render_chat", "running"]
