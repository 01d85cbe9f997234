"""``python -m forge_runtime BUNDLE [--prompt TEXT | --ids 1,2,3] [--max-new-tokens N] [--think | --tools]``.

Without a prompt it reads prompts line by line from standard input until EOF. With ``--think`` a prompt
ending in ``Answer:`` is answered in think mode: the thought in brackets, then the answer. ``--tools`` is
think mode with the calculator and unit converter live: each call in the thought runs and its result is
inserted; the thought is printed with its calls and results, then the answer.
"""

from __future__ import annotations

import argparse
import sys
import time

from .bundle import Bundle, greedy_generate, load_bundle, think_answer
from .tools_mode import tools_answer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="forge_runtime", description="Greedy decoding from an edge bundle.")
    parser.add_argument("bundle", nargs="?", default=".", help="bundle folder (default: here)")
    parser.add_argument("--prompt", help="one prompt; without it, prompts are read line by line from stdin")
    parser.add_argument("--ids", help="comma-separated token ids instead of text (no tokenizers needed)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-verify", action="store_true", help="skip the manifest checksums")
    parser.add_argument("--think", action="store_true", help="think mode: the model may think before it answers")
    parser.add_argument("--tools", action="store_true",
                        help="tools mode: think mode with calculator/converter calls run and their results inserted")
    return parser.parse_args(argv)


def _answer(bundle: Bundle, ids: list[int], max_new: int, as_text: bool) -> str:
    start = time.perf_counter()
    out = greedy_generate(bundle.model, ids, max_new, bundle.config.eos_token_id)
    ms = (time.perf_counter() - start) * 1000.0 / max(len(out), 1)
    body = bundle.codec().decode(out) if as_text else ",".join(str(t) for t in out)
    return f"{body}\n[{len(out)} tokens, {ms:.2f} ms/token]"


def _text_answer(bundle: Bundle, prompt: str, args: argparse.Namespace) -> str:
    if args.tools:
        return tools_answer(bundle, prompt, args.max_new_tokens)
    if args.think:
        return think_answer(bundle, prompt, args.max_new_tokens)
    return _answer(bundle, bundle.codec().encode(prompt), args.max_new_tokens, as_text=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    bundle = load_bundle(args.bundle, verify=not args.no_verify)
    if args.ids:
        print(_answer(bundle, [int(t) for t in args.ids.split(",")], args.max_new_tokens, as_text=False))
        return 0
    prompts = [args.prompt] if args.prompt is not None else (line.rstrip("\n") for line in sys.stdin)
    for prompt in prompts:
        print(_text_answer(bundle, prompt, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
