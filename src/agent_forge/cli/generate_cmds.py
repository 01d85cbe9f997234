"""`agent-forge generate`: text from a registered model, with the built-in tools really executed on --tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agent_forge.cli.app import STATE, JsonOpt, app, open_workspace
from agent_forge.cli.render import out, print_json

if TYPE_CHECKING:
    from agent_forge.reasoning.think_mode import ThinkingGeneration


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="Text for the model to continue, e.g. 'What is 12 * 7? Answer:'.")],
    model_id: Annotated[str, typer.Option("--model", "-m", help="Model id (see `agent-forge models`).")],
    tools: Annotated[bool, typer.Option("--tools", help="Run the calculator/converter calls it makes.")] = False,
    think: Annotated[bool, typer.Option("--think", help="Think mode: the model may think before it answers "
                                        "(the thought is shown dimmed).")] = False,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens the model may write.")] = 64,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (with --temperature > 0).")] = 0,
    max_calls: Annotated[int, typer.Option("--max-calls", min=1, help="Tool calls allowed with --tools.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Generate from a registered model; with --tools each complete call is executed and its result appended."""
    from agent_forge.model_io import load_model, load_ref, load_tokenizer
    from agent_forge.reasoning.think_mode import generate_thinking
    from agent_forge.tools import generate_with_tools

    _, registry = open_workspace()
    ref = load_ref(registry, model_id)
    model, tokenizer = load_model(ref), load_tokenizer(ref)
    if think:
        _print_thinking(model_id, prompt, generate_thinking(model, tokenizer, prompt, max_new_tokens,
                                                            temperature=temperature, seed=seed), as_json)
        return
    result = generate_with_tools(model, tokenizer, prompt, max_new_tokens, max_calls if tools else 0,
                                 temperature=temperature, seed=seed)
    calls = [{"tool": o.call.name if o.call else None, "args": o.call.args if o.call else None, "ok": o.ok,
              "result": o.value} for o in result.outcomes]
    if as_json:
        print_json({"model_id": model_id, "prompt": prompt, "text": result.text, "answer": result.answer,
                    "calls": calls, "ended": result.ended})
        return
    out.print(prompt + result.text.removesuffix("<eos>"), markup=False, highlight=False, soft_wrap=True)
    if not STATE.quiet:
        for call in calls:
            state = "ok" if call["ok"] else "refused"
            out.print(f"tool {call['tool']}({call['args']}) -> {call['result']} [{state}]", markup=False,
                      highlight=False)


def _print_thinking(model_id: str, prompt: str, result: ThinkingGeneration, as_json: bool) -> None:
    """The thought dimmed, then the answer plain (or one JSON object)."""
    thought, closed, answer = result.thought, result.closed, result.answer
    if as_json:
        print_json({"model_id": model_id, "prompt": prompt, "thought": thought, "closed": closed,
                    "answer": answer, "ended": result.ended})
        return
    out.print(prompt, markup=False, highlight=False, soft_wrap=True)
    if thought:
        out.print(f"<think>{thought}{'</think>' if closed else ' ...'}", style="dim", markup=False,
                  highlight=False, soft_wrap=True)
    out.print(answer, markup=False, highlight=False, soft_wrap=True)
