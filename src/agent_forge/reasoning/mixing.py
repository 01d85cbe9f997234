"""The Quiet-STaR mixing head: how much to trust the prediction made after a thought.

Given the hidden state of the plain prediction and of the prediction after a thought, a small MLP gives a
weight w in (0, 1); the next-token distribution is the mixture w * p_thought + (1 - w) * p_base, computed
in log space. It starts trusting the base (w about 0.12; small random output weights give every parameter a
gradient from the first step) so an untrained thought cannot hurt the model.

The head is stored with the model as ``mixing_head.safetensors`` (+ ``mixing_head.json`` for its shape)
inside the model folder, next to ``model.safetensors``: the model loads without it, Quiet-STaR inference
loads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_FILE = "mixing_head.safetensors"
CONFIG_FILE = "mixing_head.json"
INITIAL_BIAS = -2.0


class MixingHead(nn.Module):
    """w = sigmoid(MLP([h_base, h_thought])), one weight per predicted position."""

    def __init__(self, hidden_size: int, inner: int | None = None) -> None:
        super().__init__()
        self.hidden_size, self.inner = hidden_size, inner or hidden_size
        self.proj = nn.Linear(2 * hidden_size, self.inner)
        self.out = nn.Linear(self.inner, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.constant_(self.out.bias, INITIAL_BIAS)

    def logit(self, base_hidden: torch.Tensor, thought_hidden: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid weight, shape (..., 1)."""
        joint = torch.cat((base_hidden, thought_hidden), dim=-1)
        return self.out(F.gelu(self.proj(joint.to(self.proj.weight.dtype))))

    def forward(self, base_hidden: torch.Tensor, thought_hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(base_hidden, thought_hidden))

    def mix(
        self,
        base_logits: torch.Tensor,
        thought_logits: torch.Tensor,
        base_hidden: torch.Tensor,
        thought_hidden: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed log-probabilities, weight w) for aligned base and thought predictions."""
        z = self.logit(base_hidden, thought_hidden).float()
        return mix_log_probs(base_logits, thought_logits, z), torch.sigmoid(z)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
            str(folder / WEIGHTS_FILE),
        )
        (folder / CONFIG_FILE).write_text(json.dumps({"hidden_size": self.hidden_size, "inner": self.inner}))

    @classmethod
    def load(cls, folder: Path) -> MixingHead:
        config = json.loads((Path(folder) / CONFIG_FILE).read_text())
        head = cls(int(config["hidden_size"]), int(config["inner"]))
        head.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
        return head


def mix_log_probs(base_logits: torch.Tensor, thought_logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(z) p_thought + sigmoid(-z) p_base), stable in log space; z broadcasts over the vocab."""
    log_w, log_not_w = F.logsigmoid(z), F.logsigmoid(-z)
    thought = F.log_softmax(thought_logits.float(), dim=-1) + log_w
    base = F.log_softmax(base_logits.float(), dim=-1) + log_not_w
    return torch.logaddexp(thought, base)
