"""Held-out evaluation (D6): loss, perplexity, bits per byte and task accuracy on one shared held-out set."""

from agent_forge.eval.generation import GenerationResult, evaluate_accuracy_by_generation, greedy_decode
from agent_forge.eval.heldout import HeldoutSet, answers_correct, evaluate, model_logits
from agent_forge.eval.metrics import EvalResult

__all__ = [
    "EvalResult",
    "GenerationResult",
    "HeldoutSet",
    "answers_correct",
    "evaluate",
    "evaluate_accuracy_by_generation",
    "greedy_decode",
    "model_logits",
]
