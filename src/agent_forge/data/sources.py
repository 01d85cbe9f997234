"""Where examples come from: the built-in generator, real datasets (Hub or local files) and text files.

Local files are read with the Hub switched off, so a run that names only files never touches the network.
A Hub dataset that cannot be reached fails at once with one line naming the local-file alternative.
Real data is split into train/held-out by the same uid hash as the generator (``tasks.split_of``), so the
guarantee that training never sees a held-out example holds for every source.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import random
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_forge.data.adapters import ADAPTERS, COLUMNS
from agent_forge.data.tasks import (
    TASK_KINDS,
    Split,
    TaskExample,
    apportion,
    make_example,
    mix_tasks,
    split_of,
)
from agent_forge.errors import ForgeError

if TYPE_CHECKING:
    from agent_forge.config.schema import PipelineConfig

SourceKind = Literal["builtin", "arc_easy", "gsm8k", "mbpp", "piqa", "svamp", "text"]
DEFAULT_BUILTIN_EXAMPLES = 20_000
# kind -> (Hub id, config, revision). PIQA's main branch is a loading script, which datasets>=4 refuses;
# the Hub's automatic Parquet conversion of it lives on refs/convert/parquet as config "default".
HUB_DEFAULTS: dict[str, tuple[str, str | None, str | None]] = {
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", None),
    "gsm8k": ("openai/gsm8k", "main", None),
    "mbpp": ("google-research-datasets/mbpp", "full", None),
    "piqa": ("ybisk/piqa", "default", "refs/convert/parquet"),
    "svamp": ("ChilleD/SVAMP", None, None),
}
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
logger = logging.getLogger(__name__)


class DataSourceError(ForgeError):
    """A data source cannot be read: missing file, unknown format, Hub unreachable."""


class Mixture(list[TaskExample]):
    """The mixed examples, plus ``shortfall``: source name -> examples it lacked for its share (only in the
    held-out and selection splits, which never repeat an example; empty when every share was filled)."""

    shortfall: dict[str, int]

    def __init__(self, examples: Sequence[TaskExample] = (), shortfall: dict[str, int] | None = None) -> None:
        super().__init__(examples)
        self.shortfall = dict(shortfall or {})


class SourceConfig(BaseModel):
    """One source of a data mixture; ``weight`` is its share of the mixed examples."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: SourceKind
    path: str | None = None
    hub_id: str | None = None
    subset: str | None = None  # the Hub config: ARC-Easy, main, full or sanitized
    split: str = "train"  # the dataset's own split; train/held-out is decided by hash afterwards
    weight: float = Field(1.0, gt=0.0)
    max_examples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _has_a_location(self) -> SourceConfig:
        if self.path and self.hub_id:
            raise ValueError(f"source '{self.name}': give path or hub_id, not both")
        if self.kind == "text" and not self.path:
            raise ValueError(f"source '{self.name}': text sources need a path to local .txt files")
        return self


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid Hub access while reading local files (the libraries read these flags at import time)."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    saved_flags = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved_flags
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No progress bars for a few local rows; the user's setting is restored afterwards."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


def _local_files(source: SourceConfig, suffixes: Sequence[str]) -> list[Path]:
    """The files a ``path`` names: one file, every matching file under a folder, or a glob."""
    path = Path(source.path or "").expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in suffixes and p.is_file())
    elif any(ch in str(path) for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise DataSourceError(
            f"source '{source.name}': no {'/'.join(suffixes)} files at {source.path}",
            "check the path in data.sources",
        )
    return files


def _load_local_rows(source: SourceConfig, cache_dir: str | None) -> list[dict]:
    import datasets

    files = _local_files(source, tuple(_FILE_BUILDERS))
    builders = {_FILE_BUILDERS[f.suffix] for f in files}
    if len(builders) != 1:
        raise DataSourceError(
            f"source '{source.name}' mixes file formats {sorted(builders)}",
            "point path at files of one format",
        )
    try:
        with hub_offline(), _quiet_progress():
            table = datasets.load_dataset(
                builders.pop(),
                data_files={source.split: [str(f) for f in files]},
                split=source.split,
                cache_dir=cache_dir,
            )
    except Exception as exc:  # the library raises many types for a malformed file
        raise DataSourceError(
            f"source '{source.name}': cannot read {source.path} ({exc.__class__.__name__})",
            f"make it JSON/JSONL/Parquet with the Hub's columns ({COLUMNS[source.kind]})",
        ) from exc
    return table.to_list()


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP probe of the Hub, so an offline machine fails in seconds instead of after retries.

    Behind a proxy the probe would mislead, so it then answers True and leaves it to the download.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    endpoint = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _load_hub_rows(source: SourceConfig, cache_dir: str | None) -> list[dict]:
    """Rows from the Hub, or from the local Hub cache alone when the Hub cannot be reached."""
    import datasets

    default_id, default_subset, revision = HUB_DEFAULTS[source.kind]
    if source.hub_id not in (None, default_id):
        default_subset = revision = None  # another repository: its own layout
    hub_id, subset = source.hub_id or default_id, source.subset or default_subset
    online = hub_reachable()
    try:
        with contextlib.nullcontext() if online else hub_offline():
            table = datasets.load_dataset(
                hub_id, subset, split=source.split, cache_dir=cache_dir, revision=revision
            )
    except Exception as exc:  # offline, unknown name, no such split: all end the same way for the user
        reason = exc.__class__.__name__ if online else "Hub unreachable and not in the local cache"
        raise DataSourceError(
            f"source '{source.name}': cannot load {hub_id}{f' ({subset})' if subset else ''} split "
            f"{source.split} from the Hugging Face Hub ({reason})",
            f"download it and set path: to a local JSON/JSONL/Parquet file with its columns "
            f"({COLUMNS[source.kind]})",
        ) from exc
    return table.to_list()


def load_text_examples(source: SourceConfig) -> list[TaskExample]:
    """Paragraphs (blank-line separated) of local UTF-8 text files, as ``text`` examples for LM loss."""
    examples = []
    for file in _local_files(source, (".txt", ".md", ".text")):
        content = file.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        for paragraph in content.split("\n\n"):
            if paragraph.strip():
                meta = {"source": source.name, "file": file.name}
                examples.append(make_example("text", 1, paragraph.strip(), "", meta))
    return examples


def load_source(source: SourceConfig, cache_dir: str | None = None) -> list[TaskExample]:
    """Every example of one real or text source (both splits; ``load_mixture`` separates them)."""
    if source.kind == "builtin":
        raise ValueError("builtin sources are generated on demand; use load_mixture or mix_tasks")
    if source.kind == "text":
        return load_text_examples(source)
    rows = _load_local_rows(source, cache_dir) if source.path else _load_hub_rows(source, cache_dir)
    adapter = ADAPTERS[source.kind]
    examples = [example for example in map(adapter, rows) if example is not None]
    if not examples:
        raise DataSourceError(
            f"source '{source.name}' has no usable rows", f"check that its columns are {COLUMNS[source.kind]}"
        )
    return examples


def load_mixture(
    sources: Sequence[SourceConfig],
    seed: int,
    *,
    n_examples: int | None = None,
    split: Split = "train",
    kinds: Sequence[str] = TASK_KINDS,
    max_level: int = 5,
    kind_weights: dict[str, float] | None = None,
    cache_dir: str | None = None,
) -> Mixture:
    """Examples of one split mixed from ``sources`` by weight, shuffled, reproducible from ``seed``.

    Without ``n_examples`` the mixture is as large as its sources together (a builtin source counts as
    ``max_examples`` or 20,000). In the train split a finite source asked for more than it has is repeated
    (each pass reshuffled); the held-out and selection splits never repeat an example: such a source is
    used once, one warning names what it lacked and ``Mixture.shortfall`` records it. A source with no
    example in this split drops out and the others share its weight.
    """
    if not sources:
        raise DataSourceError("no data sources configured", "add at least one entry to data.sources")
    pools = _split_pools(sources, seed, split, cache_dir)
    sizes = {
        i: len(pools[i]) if i in pools else s.max_examples or DEFAULT_BUILTIN_EXAMPLES
        for i, s in enumerate(sources)
    }
    live = {i: sources[i].weight for i, size in sizes.items() if size > 0}
    if not live:
        raise DataSourceError(f"no source has {split} examples", "add rows or a builtin source")
    counts = apportion(sum(sizes.values()) if n_examples is None else n_examples, live)
    mixed = Mixture()
    for index, count in counts.items():
        if index in pools:
            drawn = _draw(pools[index], count, seed, sources[index].name, repeat=split == "train")
            if len(drawn) < count:
                mixed.shortfall[sources[index].name] = count - len(drawn)
            mixed += drawn
        elif count:
            levels = tuple(range(1, max_level + 1))
            mixed += mix_tasks(count, seed, split, kinds, levels, kind_weights)
    random.Random(f"{seed}:mixture:{split}").shuffle(mixed)
    for name, missing in mixed.shortfall.items():
        logger.warning("%s split: source '%s' is %d examples short of its share (examples are never repeated "
                       "here; add rows or lower its weight)", split, name, missing)
    return mixed


def _split_pools(
    sources: Sequence[SourceConfig], seed: int, split: Split, cache_dir: str | None
) -> dict[int, list[TaskExample]]:
    """Each finite source's examples of ``split``, capped at its ``max_examples``, by source index."""
    pools = {}
    for index, source in enumerate(sources):
        if source.kind != "builtin":
            pool = [e for e in load_source(source, cache_dir) if split_of(e.uid) == split]
            pools[index] = _draw(pool, min(len(pool), source.max_examples or len(pool)), seed, source.name)
    return pools


def _draw(pool: list[TaskExample], count: int, seed: int, salt: str, repeat: bool = True) -> list[TaskExample]:
    """``count`` examples from ``pool`` without repeats until every one has been used once; without
    ``repeat`` at most ``len(pool)`` of them, each once."""
    rng = random.Random(f"{seed}:draw:{salt}")
    drawn: list[TaskExample] = []
    count = count if repeat else min(count, len(pool))
    while len(drawn) < count and pool:
        drawn += rng.sample(pool, min(len(pool), count - len(drawn)))
    return drawn


# ---- the configured mixture -------------------------------------------------------------------------------

def source_configs(config: PipelineConfig) -> list[SourceConfig]:
    return [SourceConfig(**s.model_dump()) for s in config.data.sources]


def training_examples(
    config: PipelineConfig,
    n: int,
    seed: int,
    *,
    kind_weights: dict[str, float] | None = None,
    max_level: int | None = None,
) -> list[TaskExample]:
    """``n`` training examples of the configured mixture (never any held-out example); ``kind_weights``
    replaces the configured training mix (``data.kind_weights``)."""
    data = config.data
    weights = kind_weights if kind_weights is not None else (data.kind_weights or None)
    return load_mixture(source_configs(config), seed, n_examples=n, split="train", kinds=data.kinds,
                        max_level=max_level or data.max_level, kind_weights=weights)


def heldout_examples(config: PipelineConfig) -> Mixture:
    """The session's D6 held-out examples: every phase, ``agent-forge eval`` and ``export`` measure these."""
    data = config.data
    return load_mixture(source_configs(config), data.seed, n_examples=data.heldout_examples, split="heldout",
                        kinds=data.kinds, max_level=data.max_level)
