"""The eight phase recipes; importing this package registers them with the orchestrator."""

from agent_forge.phases import cognate  # noqa: F401
