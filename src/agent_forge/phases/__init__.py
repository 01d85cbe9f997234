"""The eight phase recipes; importing this package registers them with the orchestrator."""

from agent_forge.phases import (  # noqa: F401 - each module registers its phase
    baking,
    bitnet,
    cognate,
    edge,
    evomerge,
    final,
    forge,
    quietstar,
)
