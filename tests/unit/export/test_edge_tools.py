"""Tools mode in the torch-free bundle runtime, on a bundle of a real (tiny) model taught to call tools.

The model learns five unprompted demonstrations: two calls that work and three that the tools refuse (an
exponent tower, an unknown tool, a call without ``</tool>``). The bundle runs them with its own copies of
the tool modules; every generation and every evaluation figure equals the torch path's on the same model.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agent_forge.cli.eval_cmds
import agent_forge.cli.export_cmds  # noqa: F401 - both register their commands on the app
from agent_forge.cli.app import app
from agent_forge.config import load_config
from agent_forge.data.sources import heldout_examples
from agent_forge.data.tasks import make_example
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.suite import select_examples
from agent_forge.export.build import EdgeInputs, EdgeOptions, build_edge_bundle
from agent_forge.export.bundle import RUNTIME_DIR, TOOL_MODULES, TOOLS_DIR, verify_bundle
from agent_forge.export.evaluation import RuntimeLM
from agent_forge.export.runtime import load_bundle, tools_generate
from agent_forge.export.runtime.bundle import split_cue
from agent_forge.export.runtime.tools_mode import ToolHook
from agent_forge.reasoning.data import TrainingStyle, split_prompt, training_rows
from agent_forge.reasoning.think_mode import generate_thinking
from agent_forge.reasoning.tools_mode import tools_report
from agent_forge.tools.calls import ToolCall, execute, parse_segment
from agent_forge.tools.demos import calls_with_results, task_calls
from agent_forge.tools.tasks import make_tool_example
from unit.reasoning.reasoning_builders import model_fit, reasoning_tokenizer

TOOLS_HOME = Path(__file__).resolve().parents[3] / "src" / "agent_forge" / "tools"
BAD = [("What is 9**9**9? Answer:", "<tool>calculator</tool><args>9**9**9</args>", "exponent larger than 64"),
       ("What is the weather in Paris? Answer:", "<tool>weather</tool><args>Paris</args>", "unknown tool 'weather'"),
       ("Add one and one. Answer:", "<tool>calculator<args>1 + 1</args>", "malformed call")]
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def tool_bundle(tmp_path_factory: pytest.TempPathFactory):
    """(torch model, tokenizer, its tasks, bundle folder): the model exported in float32, so the runtime's
    logits equal torch's to float rounding."""
    tokenizer = reasoning_tokenizer()
    good = [make_tool_example("What is 347 * 29? Answer:", ToolCall("calculator", "347 * 29"), 2),
            make_tool_example("Convert 3 km to m. Answer:", ToolCall("convert", "3 km to m"), 1)]
    demos = [(task, calls_with_results(task_calls(task))) for task in good]
    demos += [(make_example("arith", 1, prompt, " none", {}), [(call, execute(parse_segment(call)).result_text)])
              for prompt, call, _ in BAD]
    ids, labels = training_rows(tokenizer, [], TrainingStyle(), 0.0, 1, demos)
    model = model_fit(ids, labels, steps=60)
    stream = [t for row in ids for t in row]
    inputs = EdgeInputs(model, tokenizer.to_json(), ids[:2], [ids[0][:8]], stream, [], lambda: model,
                        {"source_model": "tool-user"})
    options = EdgeOptions(formats=("ternary",), prefill_lengths=(16,), decode_tokens=2, agreement_tokens=4,
                          profile_repeats=1, float_dtype="float32")
    folder = tmp_path_factory.mktemp("tools") / "bundle"
    build_edge_bundle(inputs, options, folder)
    return model, tokenizer, [task for task, _ in demos], folder


def test_the_bundle_carries_the_tool_modules_byte_for_byte_under_its_manifest(tool_bundle) -> None:
    folder = tool_bundle[3]
    manifest = verify_bundle(folder)
    for name in TOOL_MODULES:
        copy = folder / RUNTIME_DIR / TOOLS_DIR / name
        assert copy.read_bytes() == (TOOLS_HOME / name).read_bytes()
        assert f"{RUNTIME_DIR}/{TOOLS_DIR}/{name}" in manifest["files"]
    assert f"{RUNTIME_DIR}/{TOOLS_DIR}/__init__.py" in manifest["files"]
    assert "--tools" in (folder / "README.md").read_text()


def test_the_tool_modules_import_only_the_standard_library_and_each_other() -> None:
    siblings = {Path(name).stem for name in TOOL_MODULES}
    for name in TOOL_MODULES:
        for node in ast.walk(ast.parse((TOOLS_HOME / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names), name
            elif isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in siblings, (name, node.module)
            elif isinstance(node, ast.ImportFrom):
                assert node.module == "__future__" or node.module.split(".")[0] in sys.stdlib_module_names, name


@pytest.mark.parametrize("prompt", ["What is 2? Answer:", "What is 2?\nAnswer: ", "No cue here", "Answer:"])
def test_the_runtime_splits_the_cue_as_the_package_does(prompt: str) -> None:
    assert split_cue(prompt) == split_prompt(make_example("arith", 1, prompt, " 2", {}))


def test_tools_mode_in_the_runtime_equals_generate_tools(tool_bundle) -> None:
    model, tokenizer, tasks, folder = tool_bundle
    bundle = load_bundle(folder)
    for task in tasks:
        ours = tools_generate(bundle, task.prompt, 40)
        theirs = generate_thinking(model, tokenizer, task.prompt, 40, tools=True)
        assert (ours.thought, ours.closed, ours.answer) == (theirs.thought, theirs.closed, theirs.answer)
        assert [(o.call, o.ok, o.value) for o in ours.calls] == [(o.call, o.ok, o.value) for o in theirs.calls]
    product = tools_generate(bundle, "What is 347 * 29? Answer:", 40)
    assert "<result>10063</result>" in product.thought and product.answer.strip() == "10063"
    assert product.render().splitlines() == [f"<think>{product.thought}</think>", product.answer]


@pytest.mark.parametrize(("prompt", "call", "error"), BAD)
def test_a_refused_call_gets_a_one_line_error_and_generation_goes_on(tool_bundle, prompt, call, error) -> None:
    generated = tools_generate(load_bundle(tool_bundle[3]), prompt, 40)
    assert f"{call}<result>error: {error}</result>" in generated.thought
    assert generated.closed and generated.answer.strip() == "none"  # after the error the model went on
    assert [(o.ok, o.value) for o in generated.calls] == [(False, error)]


@pytest.mark.parametrize(("args", "error"), [
    ("(" * 40 + "1" + ")" * 40, "expression nested too deeply"),
    (" + ".join(["123456789"] * 30), "empty or oversized arguments"),
    ("99999999999 ** 9", "number too large"),
    ("__import__('os').system('ls')", "unexpected character '_'"),
])
def test_the_runtime_hook_bounds_hostile_arguments(tool_bundle, args: str, error: str) -> None:
    codec = load_bundle(tool_bundle[3]).codec()
    hook = ToolHook(codec, codec.encode(" Answer:", bos=False))
    tokens = codec.encode(f"<think><tool>calculator</tool><args>{args}</args>", bos=False)
    assert codec.decode(hook(tokens, 0)) == f"<result>error: {error}</result>"
    assert hook(tokens, hook.max_calls) is None  # the call budget is spent
    end = [*tokens, codec.special_id("</think>")]
    assert hook(end, 1) == hook.cue and hook(tokens, 1) is None  # once the answer began, no call runs


def test_eval_tools_report_through_the_runtime_equals_torch(tool_bundle) -> None:
    model, tokenizer, tasks, folder = tool_bundle
    runtime = RuntimeLM(load_bundle(folder).model)
    ours = tools_report(runtime, ForgeTokenizer.load(folder), tasks, 128, 40)
    theirs = tools_report(model, tokenizer, tasks, 128, 40)
    assert ours == theirs
    assert ours["tools"]["overall"]["call_rate"]["accuracy"] == 1.0
    assert ours["tools"]["overall"]["well_formed_rate"]["correct"] == 3  # 9**9**9 parses; the calculator refuses it
    assert ours["tools"]["overall"]["result_correct_rate"]["correct"] == 2


def test_eval_bundle_tools_mode_from_the_cli_equals_the_torch_path(tool_bundle, tmp_path: Path) -> None:
    model, tokenizer, _, folder = tool_bundle
    result = RUNNER.invoke(app, ["--workspace", str(tmp_path), "eval", "--bundle", str(folder), "--mode", "tools",
                                 "--preset", "smoke", "--kinds", "arith", "--n", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    config = load_config("smoke")
    chosen = select_examples(heldout_examples(config), ["arith"], None, 3)
    torch_report = tools_report(model, tokenizer, chosen, config.data.seq_len, config.quietstar.max_thought_tokens)
    for key in ("n", "overall", "kinds", "direct", "corrupted_results", "tools", "samples"):
        assert report[key] == json.loads(json.dumps(torch_report[key])), key  # as JSON: level keys are text


def test_serve_bundle_and_the_bundle_itself_show_the_call_result_and_answer(tool_bundle) -> None:
    folder = tool_bundle[3]
    served = RUNNER.invoke(app, ["--quiet", "serve-bundle", str(folder), "--tools", "--prompt",
                                 "What is 347 * 29? Answer:", "--max-new-tokens", "40"])
    assert served.exit_code == 0, served.output
    assert "<tool>calculator</tool><args>347 * 29</args><result>10063</result>" in served.output
    assert served.output.splitlines()[-1].strip() == "10063"

    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from forge_runtime.__main__ import main; "
             "main([sys.argv[1], '--tools', '--prompt', 'What is 9**9**9? Answer:', '--max-new-tokens', '40']); "
             "import forge_runtime.tools.calls as calls; print(calls.__file__); "
             "print('loaded:', [n for n in ('torch', 'agent_forge') if n in sys.modules])")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, env=env,
                         cwd=folder.parent, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "<result>error: exponent larger than 64</result></think>" in lines[0] and lines[1].strip() == "none"
    assert Path(lines[2]).resolve() == (folder / RUNTIME_DIR / TOOLS_DIR / "calls.py").resolve()
    assert lines[3] == "loaded: []"
