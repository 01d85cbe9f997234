"""Run the two test phases in a workspace as a separate process (so a test can kill it with SIGKILL)."""

from __future__ import annotations

import sys

from agent_forge.config import load_config
from agent_forge.pipeline import Orchestrator
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from support.tiny_phases import TEST_PHASES

RULES = ["handoff.cognate->evomerge.num_models=2", "handoff.cognate->evomerge.required_metadata=[final_loss]",
         "handoff.evomerge->quietstar.min_fitness=0.01", "handoff.evomerge->quietstar.required_metadata=[fitness]"]


def main(workspace: str, session_id: str) -> None:
    ws = Workspace(workspace)
    registry = ModelRegistry(ws.registry_path)
    orch = Orchestrator(ws, registry, quiet=True, phases=TEST_PHASES)
    if not any(s["session_id"] == session_id for s in registry.list_sessions()):
        orch.create_session(load_config("smoke", overrides=RULES), session_id=session_id)
    orch.run(session_id)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
