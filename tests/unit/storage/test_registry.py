import multiprocessing as mp
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_forge.errors import NotFoundError, RegistryError
from agent_forge.storage.registry import ModelRegistry


def _model(reg: ModelRegistry, mid: str, session: str = "s1", phase: str = "cognate", tags=("a",)) -> None:
    reg.register_model({"model_id": mid, "session_id": session, "phase_name": phase, "model_name": mid,
                        "model_path": f"/x/{mid}", "size_mb": 1.0, "parameters": 10,
                        "metadata": {"k": 1}, "metadata_sha256": "abc", "tags": list(tags)}, parents=["p1"])


def test_wal_mode_and_schema(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "r.db")
    mode = reg.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    tables = {r[0] for r in reg.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"models", "phase_handoffs", "sessions", "metrics", "phase_runs", "model_parents"} <= tables


def test_sessions_models_handoffs_metrics(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "r.db")
    reg.create_session("s1", "tiny", {"a": 1})
    reg.update_session("s1", status="completed", progress_percent=100.0)
    assert reg.get_session("s1")["status"] == "completed"
    _model(reg, "m1")
    _model(reg, "m2", phase="evomerge", tags=("champion", "b"))
    assert [m["model_id"] for m in reg.search_models(phase="evomerge")] == ["m2"]
    assert [m["model_id"] for m in reg.search_models(tag="champion")] == ["m2"]
    assert [m["model_id"] for m in reg.search_models(tag="b", session="s1")] == ["m2"]
    assert reg.get_model("m1")["parents"] == ["p1"]
    reg.record_handoff("s1", "cognate", "evomerge", ["m1"], "passed", {"checks": []})
    assert reg.handoff_history("s1")[0]["validation_status"] == "passed"
    reg.log_metrics([("s1", "cognate", "m1", 1, "loss", 2.0), ("s1", "cognate", "m1", 1, "loss", 1.5)])
    assert [r["value"] for r in reg.metrics("s1", name="loss")] == [1.5]
    reg.log_metrics([("s1", "cognate", "m1", s, "loss", 1.0) for s in range(2, 6)])
    reg.delete_metrics_after("s1", "cognate", "m1", 3)
    assert [r["step"] for r in reg.metrics("s1", model="m1")] == [1, 2, 3]
    reg.upsert_phase_run("s1", "cognate", phase_index=0, status="completed", output_models_json=["m1"])
    assert reg.phase_runs("s1")[0]["output_models"] == ["m1"]
    reg.delete_session("s1")
    assert reg.list_sessions() == [] and reg.search_models() == []


def test_missing_things_raise_not_found(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "r.db")
    with pytest.raises(NotFoundError, match="agent-forge sessions"):
        reg.get_session("nope")
    with pytest.raises(NotFoundError):
        reg.get_model("nope")
    with pytest.raises(ValueError):
        reg.update_session("s", bogus=1)


def test_corrupt_file_is_reported_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(RegistryError, match="corrupt"):
        ModelRegistry(path)
    assert path.read_bytes().startswith(b"this is not sqlite")


def test_damaged_pages_reported(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = ModelRegistry(path)
    reg.create_session("s1", "tiny", {})
    reg.checkpoint_wal()
    reg.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError):
        ModelRegistry(path)


def test_missing_registry_readonly(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        ModelRegistry(tmp_path / "none.db", readonly=True)


def test_locked_registry_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.db"
    ModelRegistry(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr("agent_forge.storage.registry.BUSY_TIMEOUT_MS", 200)
    reg = ModelRegistry.__new__(ModelRegistry)
    try:
        with pytest.raises(RegistryError, match="locked by another process"):
            ModelRegistry.__init__(reg, path)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def _reader(path: str, stop_at: float, queue) -> None:
    reg = ModelRegistry(Path(path), readonly=True)
    reads, errors = 0, 0
    while time.time() < stop_at:
        try:
            reg.search_models()
            reg.metrics("s1")
            reads += 1
        except RegistryError:
            errors += 1
    queue.put((reads, errors))


def test_reader_process_never_blocks_writer(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    writer = ModelRegistry(path)
    writer.create_session("s1", "tiny", {})
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_reader, args=(str(path), time.time() + 3.0, queue))
    proc.start()
    time.sleep(1.0)
    slowest = 0.0
    for step in range(200):
        started = time.perf_counter()
        writer.log_metrics([("s1", "cognate", "m", step, "loss", float(step))])
        _model(writer, f"m{step}")
        slowest = max(slowest, time.perf_counter() - started)
    proc.join(30)
    reads, errors = queue.get(timeout=5)
    assert errors == 0 and reads > 10
    assert slowest < 2.0  # a writer blocked by the reader would wait for the busy timeout (10 s)


def test_session_config_is_the_validated_config(tmp_path: Path) -> None:
    from agent_forge.config import load_config
    from agent_forge.config.schema import PipelineConfig
    from agent_forge.errors import ConfigError

    reg = ModelRegistry(tmp_path / "r.db")
    config = load_config("smoke")
    reg.create_session("s1", "smoke", config.model_dump(mode="json"))
    stored = reg.session_config("s1")
    assert isinstance(stored, PipelineConfig) and stored == config
    reg.create_session("s2", "smoke", {"model": {"hidden_size": "wide"}})
    with pytest.raises(ConfigError, match="hidden_size"):
        reg.session_config("s2")


def test_public_reads_for_the_dashboard(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "r.db")
    reg.create_session("s1", "tiny", {})
    _model(reg, "m1")
    _model(reg, "m2")
    reg.log_metrics([("s1", "cognate", "phase", 3, "loss", 1.0)])
    assert reg.model_counts() == {"s1": 2}
    assert reg.session_activity()["s1"]["n_metrics"] == 1
    assert reg.metric_phases("s1") == {"cognate"}
    assert reg.parent_ids("m1") == ["p1"] and reg.child_ids("p1") == ["m1", "m2"]


WRITER = """
import sys
from agent_forge.storage.registry import ModelRegistry
registry = ModelRegistry(sys.argv[1])
registry.create_session("other", "tiny", {})
registry.close()
"""


def test_a_second_registry_in_one_process_keeps_the_first_ones_commits(tmp_path: Path) -> None:
    """Opening the registry again in a process that has it open (the CLI and a phase both do) must not drop
    that process's locks: another process closing its connection would then delete the WAL under it and
    the first registry's next commit would be lost."""
    path = tmp_path / "r.db"
    first = ModelRegistry(path)
    first.create_session("s1", "tiny", {})
    reader = ModelRegistry(path, readonly=True)  # measured before the fix: the file was left malformed
    subprocess.run([sys.executable, "-c", WRITER, str(path)], check=True, timeout=60)
    assert Path(f"{path}-wal").exists()  # the other process knew it was not the last connection
    first.create_session("s2", "tiny", {})
    first.close()
    reader.close()
    assert {s["session_id"] for s in ModelRegistry(path).list_sessions()} == {"s1", "s2", "other"}
