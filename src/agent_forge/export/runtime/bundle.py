"""Open a bundle folder: verify the manifest, read the config and settings, build the numpy model."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import RuntimeConfig
from .manifest import ManifestError, confined, read_manifest, verify_manifest
from .model import ForgeRuntimeModel
from .weights import load_weights

SETTINGS = "runtime.json"
# think mode's thought opens with one of the seven strategy markers (agent_forge.reasoning.strategies; the
# runtime imports nothing of the package): a model baked with tools would otherwise think in calls
REASONING_MARKERS = ("<mece>", "<falsify>", "<expert>", "<ortho>", "<doubt>", "<bayes>", "<domain>")
PREAMBLE_TOKENS = 6  # what a model may write before it opens a thought (as agent_forge.reasoning.think_mode)


class TextCodec:
    """Text <-> ids with the bundle's ``tokenizer.json`` (needs the ``tokenizers`` package)."""

    def __init__(self, path: Path, bos_id: int | None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as err:  # the runtime still works on token ids without it
            raise ImportError("text needs the `tokenizers` package; pass token ids instead") from err
        self.tokenizer = Tokenizer.from_file(str(path))
        self.bos_id = bos_id

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """The ids of ``text``, after ``<bos>`` unless ``bos`` is False (text that continues a sequence)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if bos and self.bos_id is not None else []) + ids

    def special_id(self, token: str) -> int:
        """The id of a special token such as ``</think>``; a tokenizer without it cannot run that mode."""
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"the bundle's tokenizer has no {token} token; re-export the bundle")
        return int(found)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


@dataclass
class Bundle:
    folder: Path
    config: RuntimeConfig
    settings: dict[str, Any]
    manifest: dict[str, Any]
    model: ForgeRuntimeModel

    def codec(self) -> TextCodec:
        return TextCodec(confined(self.folder, "tokenizer.json"), self.settings.get("bos_token_id"))


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def model_file(folder: Path, settings: dict[str, Any], key: str, manifest: dict[str, Any] | None) -> Path:
    """The file a ``runtime.json`` entry names, confined to the bundle and, when ``manifest`` is given,
    one of the files the manifest lists (and so checked)."""
    name = settings.get(key)
    path = confined(folder, name, f"{SETTINGS} entry {key}")
    if manifest is not None and name not in manifest["files"]:
        raise ManifestError(f"{SETTINGS} entry {key} names {name!r}, which the manifest does not list; "
                            "re-create the bundle")
    return path


def load_bundle(folder: str | Path, verify: bool = True) -> Bundle:
    """Verify every file against the manifest (unless told not to), then load the ternary model; every path
    it opens stays inside the bundle folder."""
    folder = Path(folder)
    manifest = verify_manifest(folder) if verify else read_manifest(folder)
    settings = _json(confined(folder, SETTINGS))
    if not settings.get("weights"):
        raise ValueError(f"bundle {folder} has no packed ternary weights (formats {settings.get('formats')})")
    config = RuntimeConfig.from_dict(_json(confined(folder, "config.json")))
    weights = load_weights(model_file(folder, settings, "weights", manifest if verify else None),
                           int(settings.get("activation_bits", 8)), float(settings.get("activation_eps", 1e-5)))
    return Bundle(folder, config, settings, manifest, ForgeRuntimeModel(weights, config))


def greedy_generate(model: ForgeRuntimeModel, prompt_ids: list[int], max_new_tokens: int,
                    eos_id: int | None = None,
                    hook: Callable[[list[int], int], list[int] | None] | None = None,
                    allowed: Callable[[int], Sequence[int] | None] | None = None) -> list[int]:
    """Greedy decoding with the cache: one prefill, then one single-token forward per new token. ``hook``
    (tokens so far, inserts so far) may return ids to feed after a token (a tool's result); they are part
    of the output but do not count against ``max_new_tokens``. ``allowed`` (the previous id) may confine
    the next token to a few ids."""
    cache = model.new_cache()
    logits, _ = model.forward(np.asarray(prompt_ids), cache, last_only=True)
    generated: list[int] = []
    own, inserts, previous = 0, 0, prompt_ids[-1]
    while own < max_new_tokens:
        token = best_token(logits[-1], allowed(previous) if allowed is not None else None)
        generated.append(token)
        own += 1
        if eos_id is not None and token == eos_id:
            break
        extra = hook(generated, inserts) if hook is not None and own < max_new_tokens else None
        if extra:
            inserts += 1
            generated += extra
        previous = generated[-1]
        logits, _ = model.forward(np.asarray([token, *(extra or [])]), cache, last_only=True)
    return generated


def best_token(logits: np.ndarray, allowed: Sequence[int] | None = None) -> int:
    """The greedy choice, among ``allowed`` ids only when given."""
    if allowed is None:
        return int(np.argmax(logits))
    ids = list(allowed)
    return ids[int(np.argmax(logits[ids]))]


@dataclass
class ThinkTokens:
    """The token ids think mode needs: the thought's brackets, the answer cue and the end of sequence."""

    think: int
    end_think: int
    cue: list[int]
    eos: int | None
    openers: list[int] | None = None  # the ids a thought may open with (the strategy markers); None: any


def think_generate(model: ForgeRuntimeModel, body_ids: list[int], tokens: ThinkTokens, max_thought: int,
                   max_answer: int) -> tuple[list[int], list[int]]:
    """Think mode (as ``agent-forge eval --mode think``): the model continues the task's body; if it opens
    a thought within ``PREAMBLE_TOKENS`` + 1 tokens (after a persona's greeting, say) it thinks greedily
    (its first token one of ``tokens.openers``) until ``</think>`` or ``max_thought`` tokens, then the cue is
    fed and the answer decoded. Returns (thought ids without the brackets, answer ids); a model that does
    not open a thought gets the cue right after the body and answers directly (empty thought)."""
    cache = model.new_cache()
    logits, _ = model.forward(np.asarray(body_ids), cache, last_only=True)
    lead: list[int] = []  # what the model writes up to <think>, the preamble and <think> fed as written
    while len(lead) <= PREAMBLE_TOKENS and tokens.think not in lead:
        lead.append(best_token(logits[-1]))
        logits, _ = model.forward(np.asarray([lead[-1]]), cache, last_only=True)
    thought: list[int] = []
    if tokens.think in lead:
        token = best_token(logits[-1], tokens.openers)
        while len(thought) < max_thought and token != tokens.end_think:
            thought.append(token)
            logits, _ = model.forward(np.asarray([token]), cache, last_only=True)
            token = best_token(logits[-1])
        logits, _ = model.forward(np.asarray([tokens.end_think]), cache, last_only=True)
    else:  # it answered at once: the cue follows the body, as in direct mode
        cache = model.new_cache()
        model.forward(np.asarray(body_ids), cache, last_only=True)
    logits, _ = model.forward(np.asarray(tokens.cue), cache, last_only=True)
    answer: list[int] = []
    for _ in range(max_answer):
        answer.append(int(np.argmax(logits[-1])))
        if answer[-1] == tokens.eos:
            break
        logits, _ = model.forward(np.asarray([answer[-1]]), cache, last_only=True)
    return thought, answer


CUE = "Answer:"
_CUE = re.compile(r"\s*Answer:\s*$")  # the package's split (agent_forge.reasoning.data.split_prompt)


def split_cue(prompt: str) -> tuple[str, str]:
    """(body, cue) with ``body + cue == prompt``: the cue is the trailing ``Answer:`` with its spaces,
    which think and tools mode take off the prompt and insert after the thought ("" when there is none)."""
    match = _CUE.search(prompt)
    return (prompt[: match.start()], prompt[match.start() :]) if match else (prompt, "")


def think_answer(bundle: Bundle, prompt: str, max_new: int) -> str:
    """``<think>thought</think> answer`` for one prompt (the cue ``Answer:`` is taken off and fed after)."""
    codec = bundle.codec()
    body, cue = split_cue(prompt)
    cue_ids = codec.encode(cue or " " + CUE, bos=False)
    tokens = ThinkTokens(codec.special_id("<think>"), codec.special_id("</think>"), cue_ids,
                         bundle.config.eos_token_id, [codec.special_id(m) for m in REASONING_MARKERS])
    thought, answer = think_generate(bundle.model, codec.encode(body), tokens, max_new, 16)
    shown = f"<think>{codec.decode(thought)}</think>" if thought else ""
    return shown + codec.decode([t for t in answer if t != tokens.eos])
