"""`agent-forge generate`: text from a registered model; think mode, and tools mode with the calls really run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import torch
import typer

from agent_forge.cli.app import STATE, JsonOpt, app, generation_budget, open_workspace
from agent_forge.cli.render import out, print_json

if TYPE_CHECKING:
    from agent_forge.reasoning.think_mode import ThinkingGeneration


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="Text for the model to continue, e.g. 'What is 12 * 7? Answer:'.")],
    model_id: Annotated[str, typer.Option("--model", "-m", help="Model id (see `agent-forge models`).")],
    tools: Annotated[bool, typer.Option("--tools", help="Tools mode: think mode, the calculator/converter calls "
                                        "in a thought really run.")] = False,
    think: Annotated[bool, typer.Option("--think", help="Think mode: the model may think before it answers "
                                        "(the thought is shown dimmed).")] = False,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1, help="Tokens the model may write "
                              "(default 64; 192 with --think or --tools).")] = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (with --temperature > 0).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Generate from a registered model. --think: the model may think before it answers; --tools: think mode
    with the tool runtime executing each complete call and inserting its result."""
    from agent_forge.engine import decode
    from agent_forge.model_io import load_model, load_ref, load_tokenizer
    from agent_forge.reasoning.think_mode import generate_thinking

    max_new_tokens = generation_budget(max_new_tokens, think or tools, 64)
    _, registry = open_workspace()
    ref = load_ref(registry, model_id)
    model, tokenizer = load_model(ref), load_tokenizer(ref)
    if think or tools:
        result = generate_thinking(model, tokenizer, prompt, max_new_tokens, temperature=temperature, seed=seed,
                                   tools=tools)
        _print_thinking(model_id, prompt, result, as_json)
        return
    generator = torch.Generator().manual_seed(seed)
    (decoded,) = decode(model.eval(), [tokenizer.encode(prompt, bos=True)], max_new_tokens, temperature=temperature,
                        generator=generator)
    text = tokenizer.decode(decoded.tokens)
    if as_json:
        print_json({"model_id": model_id, "prompt": prompt, "text": text, "ended": decoded.ended})
        return
    out.print(prompt + text.removesuffix("<eos>"), markup=False, highlight=False, soft_wrap=True)


def _print_thinking(model_id: str, prompt: str, result: ThinkingGeneration, as_json: bool) -> None:
    """The thought dimmed (with its calls and their results), the calls run, then the answer plain (or one
    JSON object)."""
    thought, closed, answer = result.thought, result.closed, result.answer
    calls = [{"tool": o.call.name if o.call else None, "args": o.call.args if o.call else None, "ok": o.ok,
              "result": o.value} for o in result.calls]
    if as_json:
        print_json({"model_id": model_id, "prompt": prompt, "thought": thought, "closed": closed,
                    "answer": answer, "calls": calls, "ended": result.ended})
        return
    out.print(prompt, markup=False, highlight=False, soft_wrap=True)
    if thought:
        out.print(f"<think>{thought}{'</think>' if closed else ' ...'}", style="dim", markup=False,
                  highlight=False, soft_wrap=True)
    if not STATE.quiet:
        for call in calls:
            state = "ok" if call["ok"] else "refused"
            out.print(f"tool {call['tool']}({call['args']}) -> {call['result']} [{state}]", markup=False,
                      highlight=False)
    out.print(answer, markup=False, highlight=False, soft_wrap=True)
