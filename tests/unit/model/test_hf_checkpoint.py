"""Issue 24 point 1: a stored model folder is a self-contained Hugging Face checkpoint.

``config.json`` names the model's own code (``auto_map``) and its BitLinear set-up; the code written beside
the weights is generated from this package's source (``model/remote_code.py``) and must stay that source; a
ternary folder builds as ternary on every path; the tokenizer has a chat template and the true context.
The same folders in a fresh environment with only torch and transformers: tests/e2e/test_hf_portable.py.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from agent_forge.data.tokenizer import UNBOUNDED_LENGTH, train_tokenizer
from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model.remote_code import (
    AUTO_MAP,
    CONFIG_FILE,
    CONFIG_MODULE,
    MODELING_FILE,
    _import_order,
    _source,
    remote_code_files,
)
from agent_forge.model_io import bitlinear_meta, load_model, load_tokenizer, write_model_folder
from agent_forge.quant.bitlinear import (
    BitLinearConfig,
    bitlinear_modules,
    freeze_ternary,
    make_ternary,
    replace_linears,
    ternary_layout,
)
from agent_forge.storage.artifacts import ModelRef
from support.shapes import unit_config

CORPUS = [f"Question: what is {a} times {b}? Answer: {a * b}" for a in range(25) for b in range(9)]
ALLOWED_IMPORTS = {"torch", "transformers", "huggingface_hub", *sys.stdlib_module_names}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, 512)


def _model(kind: str, vocab: int) -> ForgeForCausalLM:
    torch.manual_seed(0)
    model = ForgeForCausalLM(unit_config(vocab_size=vocab)).eval()
    if kind != "float":
        replace_linears(model, keep={"lm_head"}, config=BitLinearConfig())
    if kind == "frozen":
        freeze_ternary(model)
    return model


@pytest.fixture(scope="module")
def folders(tokenizer, tmp_path_factory) -> dict[str, tuple[Path, ForgeForCausalLM]]:
    """A float, a ternary (shadow weights, Phases 4-7) and a frozen ternary (Phase 8) folder."""
    made = {}
    for kind in ("float", "ternary", "frozen"):
        model = _model(kind, tokenizer.vocab_size)
        folder = tmp_path_factory.mktemp(kind)
        write_model_folder(model, tokenizer, folder)
        made[kind] = (folder, model)
    return made


def _ids(tokenizer) -> torch.Tensor:
    return torch.tensor([tokenizer.encode("Question: what is 3 times 4? Answer:", bos=True)])


def _load_remote(folder: Path) -> torch.nn.Module:
    """The model through the folder's own code, as transformers runs it for trust_remote_code=True."""
    remote_class = get_class_from_dynamic_module(AUTO_MAP["AutoModelForCausalLM"], str(folder))
    assert not remote_class.__module__.startswith("agent_forge")
    return remote_class.from_pretrained(folder).eval()


def test_the_folder_names_its_code_and_its_ternary_layers(folders) -> None:
    for kind, (folder, model) in folders.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == AUTO_MAP
        assert (folder / CONFIG_FILE).is_file() and (folder / MODELING_FILE).is_file()
        assert config["bitlinear"] == ternary_layout(model)
        assert (config["bitlinear"] is None) == (kind == "float")
    assert json.loads((folders["frozen"][0] / "config.json").read_text())["bitlinear"]["frozen"] is True


@pytest.mark.parametrize("kind", ["float", "ternary", "frozen"])
def test_the_remote_code_computes_what_our_loader_computes(folders, tokenizer, kind) -> None:
    folder, model = folders[kind]
    ours = load_model(ModelRef(kind, folder, {}))
    remote = _load_remote(folder)
    assert sum(type(m).__name__ == "BitLinear" for m in remote.modules()) == len(bitlinear_modules(ours))
    ids = _ids(tokenizer)
    with torch.no_grad():
        assert torch.equal(remote(ids).logits, ours(ids).logits)
        assert torch.equal(ours(ids).logits, model(ids).logits)
    greedy = {"max_new_tokens": 6, "do_sample": False}
    assert torch.equal(remote.generate(ids, **greedy), ours.generate(ids, **greedy))


def test_the_registered_auto_class_builds_a_ternary_folder_as_ternary(folders, tokenizer) -> None:
    """With agent_forge imported, transformers uses our own classes: they read the layout too (the folders
    of issue 24 loaded as float there, logits off by about 10.9)."""
    folder, model = folders["ternary"]
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(loaded) is ForgeForCausalLM and set(bitlinear_modules(loaded)) == set(bitlinear_modules(model))
    with torch.no_grad():
        assert torch.equal(loaded(_ids(tokenizer)).logits, model(_ids(tokenizer)).logits)


def test_a_folder_written_before_still_loads_with_our_loader(tokenizer, tmp_path: Path) -> None:
    """What main wrote until now: no code, no layout in config.json; the layout in the artifact metadata."""
    model = _model("ternary", tokenizer.vocab_size)
    model.save_pretrained(tmp_path, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("bitlinear")
    (tmp_path / "config.json").write_text(json.dumps(config))
    tokenizer.save(tmp_path)
    loaded = load_model(ModelRef("old", tmp_path, {"bitlinear": bitlinear_meta(model, BitLinearConfig())}))
    assert set(bitlinear_modules(loaded)) == set(bitlinear_modules(model))
    with torch.no_grad():
        assert torch.equal(loaded(_ids(tokenizer)).logits, model(_ids(tokenizer)).logits)
    assert load_tokenizer(ModelRef("old", tmp_path, {})).encode("3 times 4") == tokenizer.encode("3 times 4")


def test_the_tokenizer_has_the_chat_template_and_the_true_context(folders, tokenizer) -> None:
    folder, model = folders["float"]
    hf = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    assert hf.model_max_length == model.config.max_seq_len
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    text = hf.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    assert text == "<bos>What is 2 + 3?\nAnswer:"
    ids = hf.apply_chat_template(question, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert list(ids) == tokenizer.encode("What is 2 + 3?\nAnswer:", bos=True)  # the prompts the models learn
    turns = [{"role": "system", "content": "Be brief."}, *question, {"role": "assistant", "content": "5"},
             {"role": "user", "content": "And 2 + 4?"}]
    assert hf.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == (
        "<bos>Be brief.\nWhat is 2 + 3?\nAnswer: 5<eos>\nAnd 2 + 4?\nAnswer:")


def test_a_tokenizer_saved_without_a_model_keeps_an_unbounded_length(tokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["model_max_length"] == UNBOUNDED_LENGTH


# ---- the code beside the weights is this package's code ------------------------------------------------

def _imported_packages(text: str) -> set[str]:
    tree = ast.parse(text)
    found = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}


def test_the_code_imports_only_torch_transformers_and_the_standard_library() -> None:
    for name, text in remote_code_files().items():
        assert _imported_packages(text) <= ALLOWED_IMPORTS, name
    relative = [n.module for n in ast.walk(ast.parse(remote_code_files()[MODELING_FILE]))
                if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == [Path(CONFIG_FILE).stem]


def _definitions(module: str) -> list[tuple[str, str]]:
    """(name, source text) of every top-level class and function of a module, and of every method of
    ForgeConfig (whose field defaults the generator writes as literals)."""
    source = _source(module)
    found = []
    for node in ast.parse(source).body:
        if module == CONFIG_MODULE and isinstance(node, ast.ClassDef) and node.name == "ForgeConfig":
            found += [(f"ForgeConfig.{m.name}", ast.get_source_segment(source, m)) for m in node.body
                      if isinstance(m, ast.FunctionDef) and m.name not in ("from_section", "from_shape")]
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name != "_PresetShapes":
            found.append((node.name, ast.get_source_segment(source, node)))
    return found


def test_the_generated_code_is_the_model_code_word_for_word() -> None:
    """The drift check: every class and function of every module the model runs is in the generated file
    exactly as in the package (a generator that rewrote or lost one fails here)."""
    files = remote_code_files()
    modules = [name for name, _ in _import_order("agent_forge.model.modeling", {CONFIG_MODULE: "."})]
    assert {"agent_forge.model.modeling", "agent_forge.quant.bitlinear", "agent_forge.model.attention"} <= set(modules)
    for module in modules:
        for name, text in _definitions(module):
            assert text in files[MODELING_FILE], f"{module}.{name} differs in {MODELING_FILE}"
    for name, text in _definitions(CONFIG_MODULE):
        assert text in files[CONFIG_FILE], f"{name} differs in {CONFIG_FILE}"


def test_the_generated_config_has_the_package_defaults(folders) -> None:
    folder, _ = folders["float"]
    remote_config = get_class_from_dynamic_module(AUTO_MAP["AutoConfig"], str(folder))
    assert remote_config.__module__ != ForgeConfig.__module__
    assert remote_config().to_dict() == ForgeConfig().to_dict()


def test_the_generator_refuses_a_module_it_cannot_carry() -> None:
    with pytest.raises(RuntimeError, match=r"cannot carry agent_forge\.model_io"):
        _import_order("agent_forge.model_io", {})


# ---- the ternary layout -----------------------------------------------------------------------------

def test_a_layout_rebuilds_the_same_layers_and_refuses_what_the_model_lacks() -> None:
    model = _model("frozen", 512)
    fresh = ForgeForCausalLM(unit_config(vocab_size=512))
    make_ternary(fresh, ternary_layout(model))
    assert ternary_layout(fresh) == ternary_layout(model)
    assert ternary_layout(ForgeForCausalLM(unit_config())) is None
    with pytest.raises(ValueError, match="lacks"):
        make_ternary(ForgeForCausalLM(unit_config()), {**ternary_layout(model), "modules": ["nowhere.proj"]})
    next(iter(bitlinear_modules(model).values())).unfreeze()
    with pytest.raises(ValueError, match="all frozen or none"):
        ternary_layout(model)
