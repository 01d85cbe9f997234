"""Micro-benchmark of MuonGrokfast: step time against torch AdamW, and a small learning comparison.

Step time uses the parameter shapes of the default Forge model (hidden 128, 4 layers, MLP 344, vocab
2048), with random gradients, so it measures the optimizer alone. The learning comparisons train a small
embedding-MLP on modular addition (the grokking task; held-out accuracy) or on next-character prediction of
a text file (held-out cross-entropy).

    python benchmarks/optim.py --threads 1 --steps 20
    python benchmarks/optim.py --learn chars --text some.txt --learn-steps 600 --lr 1e-3
    python benchmarks/optim.py --learn modular --learn-steps 1500 --lr 3e-3 --weight-decay 1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from agent_forge.optim import MuGrokConfig, MuonGrokfast


def model_shapes(hidden: int = 128, layers: int = 4, mlp: int = 344, vocab: int = 2048) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {"embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden)}
    for layer in range(layers):
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"layers.{layer}.attn.{name}.weight"] = (hidden, hidden)
        shapes[f"layers.{layer}.mlp.up.weight"] = (mlp, hidden)
        shapes[f"layers.{layer}.mlp.gate.weight"] = (mlp, hidden)
        shapes[f"layers.{layer}.mlp.down.weight"] = (hidden, mlp)
        shapes[f"layers.{layer}.norm1.weight"] = (hidden,)
        shapes[f"layers.{layer}.norm2.weight"] = (hidden,)
    return shapes


def time_steps(make: Callable[[list[tuple[str, nn.Parameter]]], torch.optim.Optimizer], steps: int) -> float:
    """Milliseconds per step after two warm-up steps."""
    generator = torch.Generator().manual_seed(0)
    params = [
        (n, nn.Parameter(torch.randn(*s, generator=generator) * 0.02)) for n, s in model_shapes().items()
    ]
    optimizer = make(params)
    for _, param in params:
        param.grad = torch.randn(param.shape, generator=generator) * 1e-3
    for _ in range(2):
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1e3


def step_time_table(steps: int) -> None:
    base = MuGrokConfig.from_phase(1)
    variants: dict[str, Callable] = {
        "torch AdamW (foreach)": lambda p: torch.optim.AdamW([q for _, q in p], lr=1e-3),
        "MuonGrokfast phase-1 (bf16 NS, k=5)": lambda p: MuonGrokfast(p, base),
        "MuonGrokfast fp32 NS": lambda p: MuonGrokfast(p, dataclasses.replace(base, ns_dtype="float32")),
        "MuonGrokfast k=3": lambda p: MuonGrokfast(p, dataclasses.replace(base, ns_steps=3)),
        "MuonGrokfast Grokfast off": lambda p: MuonGrokfast(p, dataclasses.replace(base, grokfast=False)),
    }
    params = sum(torch.Size(s).numel() for s in model_shapes().values())
    print(f"step time, {params / 1e6:.2f}M parameters, {torch.get_num_threads()} thread(s), {steps} steps")
    for name, make in variants.items():
        print(f"  {name:40s} {time_steps(make, steps):8.2f} ms/step")


class ContextMLP(nn.Module):
    """Embeddings of a fixed context, flattened, through a two-layer MLP: hidden matrices for Muon."""

    def __init__(self, vocab: int, context: int, width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.body = nn.Sequential(
            nn.Linear(context * width, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.lm_head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.body(self.embed(tokens).flatten(1)))


@dataclasses.dataclass
class Task:
    """A learning problem: a model, a training batch per step, a held-out metric."""

    name: str
    model: Callable[[], nn.Module]
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    held_out: Callable[[nn.Module], str]


def modular_task(modulus: int = 47, seed: int = 0) -> Task:
    """Half the pairs of a + b mod p, full batch: the grokking benchmark; metric held-out accuracy."""
    grid = torch.cartesian_prod(torch.arange(modulus), torch.arange(modulus))
    order = torch.randperm(len(grid), generator=torch.Generator().manual_seed(seed))
    train, held = grid[order[: len(grid) // 2]], grid[order[len(grid) // 2 :]]

    def held_out(model: nn.Module) -> str:
        accuracy = (model(held).argmax(-1) == held.sum(1) % modulus).float().mean().item()
        return f"held-out accuracy {accuracy:6.3f}"

    return Task(
        f"mod-{modulus} addition",
        lambda: ContextMLP(modulus, 2),
        lambda _: (train, train.sum(1) % modulus),
        held_out,
    )


def char_task(path: Path, context: int = 16, batch: int = 128) -> Task:
    """Next-character prediction on a text file (last 10% held out); metric held-out cross-entropy."""
    text = path.read_text(encoding="utf-8")
    vocab = {char: index for index, char in enumerate(sorted(set(text)))}
    data = torch.tensor([vocab[char] for char in text])
    cut = int(0.9 * len(data))

    def sample(
        source: torch.Tensor, generator: torch.Generator, count: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(source) - context - 1, (count,), generator=generator)
        windows = torch.stack([source[start : start + context] for start in starts])
        return windows, source[starts + context]

    held_x, held_y = sample(data[cut:], torch.Generator().manual_seed(99), 4096)

    def held_out(model: nn.Module) -> str:
        return f"held-out loss {nn.functional.cross_entropy(model(held_x), held_y).item():6.3f} nats/char"

    return Task(
        f"chars of {path.name}",
        lambda: ContextMLP(len(vocab), context),
        lambda g: sample(data[:cut], g, batch),
        held_out,
    )


def learn_run(task: Task, make: Callable[[nn.Module], torch.optim.Optimizer], steps: int, seed: int) -> str:
    torch.manual_seed(seed)
    model = task.model()
    optimizer = make(model)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inputs, targets = task.batch(generator)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return f"train loss {loss.item():7.4f}   {task.held_out(model)}"


def _ours(base: MuGrokConfig, **changes: object) -> Callable[[nn.Module], torch.optim.Optimizer]:
    config = dataclasses.replace(base, **changes)
    return lambda model: MuonGrokfast(model.named_parameters(), config)


def _adamw(lr: float, decay: float) -> Callable[[nn.Module], torch.optim.Optimizer]:
    return lambda model: torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay, betas=(0.9, 0.95))


def learning_table(task: Task, steps: int, seeds: int, lr: float, decay: float) -> None:
    base = dataclasses.replace(
        MuGrokConfig.from_phase(1),
        muon_lr=lr,
        fallback_lr=lr,
        weight_decay=decay,
        fallback_weight_decay=decay,
    )
    variants: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
        "torch AdamW": _adamw(lr, decay),
        "Muon+AdamW, Grokfast off": _ours(base, grokfast=False),
        "MuonGrokfast lambda 0.3 k=5": _ours(base),
        "MuonGrokfast lambda 0.3 k=3": _ours(base, ns_steps=3),
        "MuonGrokfast lambda 2.0 k=5": _ours(base, grokfast_lambda=2.0),
    }
    print(f"{task.name}: {steps} steps, lr {lr}, weight decay {decay}")
    for name, make in variants.items():
        for seed in range(seeds):
            print(f"  {name:30s} seed {seed}  {learn_run(task, make, steps, seed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--learn", choices=["modular", "chars"], help="also run a learning comparison")
    parser.add_argument(
        "--text", type=Path, default=Path("docs/design/interfaces.md"), help="for --learn chars"
    )
    parser.add_argument("--learn-steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="5 timed steps, no learning comparison")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.learn = 5, None
    torch.set_num_threads(args.threads)
    step_time_table(args.steps)
    if args.learn:
        task = modular_task() if args.learn == "modular" else char_task(args.text)
        learning_table(task, args.learn_steps, args.seeds, args.lr, args.weight_decay)


if __name__ == "__main__":
    main()
