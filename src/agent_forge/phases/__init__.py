"""The eight phase recipes, by name. Only the composition root (``agent_forge.cli.composition``) hands them
to the orchestrator; the pipeline knows phases through the ``Phase`` interface alone."""

from agent_forge.phases.baking import BakingPhase
from agent_forge.phases.bitnet import BitNetPhase
from agent_forge.phases.cognate import CognatePhase
from agent_forge.phases.edge import EdgePhase
from agent_forge.phases.evomerge import EvoMergePhase
from agent_forge.phases.final import FinalPhase
from agent_forge.phases.forge import ForgePhase
from agent_forge.phases.quietstar import QuietStarPhase
from agent_forge.pipeline.phase import Phase

PHASES: dict[str, type[Phase]] = {
    phase.name: phase
    for phase in (CognatePhase, EvoMergePhase, QuietStarPhase, BitNetPhase, ForgePhase, BakingPhase, EdgePhase,
                  FinalPhase)
}

__all__ = ["PHASES"]
