"""Grokfast's effect measured, not assumed: steps to a target held-out accuracy with the filter on and off.

Trains the Forge model of a preset the way Phase 5 trains it (BitLinear layers, quantization-aware, the
Phase 5 MuonGrokfast preset) on tasks of one difficulty level, twice from the same initial weights and
the same batches: once with the Grokfast filter, once without. Held-out accuracy (teacher-forced exact
match on the held-out split) is measured every ``--eval-every`` steps; the first step at which it
reaches ``--target`` is the figure. Prints both, the held-out loss of both runs after the same number of
steps (the last evaluation both reached), and the ratio off/on (> 1: Grokfast gets there faster).
A run that never reaches the target within ``--steps`` is reported as such (the ratio is then a bound).
The default task, two-choice multiple choice at level 1, scores exactly 0 until the model answers with a
letter followed by <eos>; 0.5 is reached when it has learned that format and picks at chance or better.

    python benchmarks/grokfast.py                                   # smoke shape, short
    python benchmarks/grokfast.py --preset tiny --steps 400 --target 0.5 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass

import torch

from agent_forge.config import load_config
from agent_forge.data.dataset import PackedDataset
from agent_forge.data.tasks import mix_tasks, training_text
from agent_forge.data.tokenizer import train_tokenizer
from agent_forge.eval.heldout import HeldoutSet, evaluate
from agent_forge.model import ForgeForCausalLM
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import forge_config
from agent_forge.quant.bitlinear import replace_linears


@dataclass
class Data:
    train: PackedDataset
    heldout: HeldoutSet
    vocab: int


@dataclass
class Outcome:
    grokfast: bool
    steps_to_target: int | None
    final_accuracy: float
    curve: list[tuple[int, float, float, float]]  # step, train loss, held-out loss, held-out accuracy
    seconds: float


def build_data(args: argparse.Namespace) -> Data:
    """Level-``args.level`` tasks: a tokenizer, packed training rows and a held-out accuracy set."""
    config = load_config(args.preset)
    kinds, levels = tuple(args.kinds), (args.level,)
    train = mix_tasks(args.train_examples, args.seed, "train", kinds, levels)
    held = mix_tasks(args.eval_examples, args.seed, "heldout", kinds, levels)
    tokenizer = train_tokenizer((training_text(e) for e in train), config.model.vocab_size)
    seq_len = config.data.seq_len
    dataset = PackedDataset.from_examples(tokenizer, train, seq_len, args.batch_size, args.seed)
    return Data(dataset, HeldoutSet.build(tokenizer, held, seq_len, max_lm_sequences=8), config.model.vocab_size)


def initial_model(args: argparse.Namespace) -> ForgeForCausalLM:
    torch.manual_seed(args.seed)
    model = ForgeForCausalLM(forge_config(load_config(args.preset)))
    replace_linears(model, keep={"lm_head"})
    return model


def heldout_figures(model: ForgeForCausalLM, held: HeldoutSet) -> tuple[float, float]:
    """(held-out loss, teacher-forced exact-match accuracy); ``evaluate`` restores the training mode."""
    result = evaluate(model, held)
    return result.loss, result.accuracy


def train_until(args: argparse.Namespace, data: Data, grokfast: bool) -> Outcome:
    """Train from the seed's weights on the same batches; stop at the target (or after ``--steps``)."""
    model = initial_model(args).train()
    config = dataclasses.replace(MuGrokConfig.from_phase("5"), grokfast=grokfast)
    optimizer = build_optimizer(model, config)
    curve: list[tuple[int, float, float, float]] = []
    start = time.perf_counter()
    reached, acc = None, heldout_figures(model, data.heldout)[1]
    for step in range(1, args.steps + 1):
        batch = data.train.batch(step - 1)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.steps:
            heldout_loss, acc = heldout_figures(model, data.heldout)
            curve.append((step, float(loss.detach()), heldout_loss, acc))
            if acc >= args.target:
                reached = step
                break
    return Outcome(grokfast, reached, acc, curve, time.perf_counter() - start)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--kinds", nargs="+", default=["mc"], choices=["arith", "mc", "code"])
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-examples", type=int, default=3000)
    parser.add_argument("--eval-examples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="30 steps and 600 examples (a smoke check)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.eval_every, args.train_examples, args.eval_examples = 30, 10, 600, 32
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = build_data(args)
    outcomes = [train_until(args, data, grokfast=True), train_until(args, data, grokfast=False)]
    print(f"preset {args.preset}, level {args.level} {'+'.join(args.kinds)}, target accuracy {args.target}, "
          f"at most {args.steps} steps, eval every {args.eval_every}, seed {args.seed}")
    for out in outcomes:
        reached = out.steps_to_target if out.steps_to_target is not None else f">{args.steps} (not reached)"
        print(f"  grokfast {'on ' if out.grokfast else 'off'}: steps to target {reached}, "
              f"final accuracy {out.final_accuracy:.3f}, {out.seconds:.1f} s")
    common = min(o.curve[-1][0] for o in outcomes)
    losses = [next(c[2] for c in o.curve if c[0] == common) for o in outcomes]
    print(f"  held-out loss after {common} steps (same seed, same batches): on {losses[0]:.4f}, "
          f"off {losses[1]:.4f}")
    on, off = (o.steps_to_target or args.steps for o in outcomes)
    bound = "" if all(o.steps_to_target for o in outcomes) else " (bound: a run did not reach the target)"
    print(f"  ratio off/on: {off / on:.2f}{bound}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "outcomes": [dataclasses.asdict(o) for o in outcomes]}, handle, indent=2)


if __name__ == "__main__":
    main()
