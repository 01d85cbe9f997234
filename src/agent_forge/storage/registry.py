"""The model registry: SQLite in WAL mode (spec 3.1.2) plus metrics and per-phase run records.

WAL lets the CLI and the dashboard read while the pipeline writes: readers never block the writer. Only the
pipeline process (rank 0 under torchrun) writes. A registry that is locked or corrupt raises a
``RegistryError`` with the fix; a missing registry is only created for a workspace without sessions.

Paths inside the workspace are stored relative to its root (``sessions/<session>/...``), so a workspace that
is moved or copied keeps working; readers get them back absolute, under the workspace the registry is in.
Registries of schema version 0 (absolute paths) are migrated when first opened for writing.

Nothing but SQLite ever opens the database file: closing any other handle on it drops every POSIX lock this
process holds there, and another process closing its connection then takes itself for the last one, folds
the WAL into the file and deletes it, so this process's next commit goes to a deleted WAL and is lost
(tests/unit/storage/test_registry.py reproduces it). A file that is not a database is told by SQLite.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent_forge.config.loader import validate_config
from agent_forge.config.schema import PipelineConfig
from agent_forge.errors import DISK_FULL_FIX, DiskFullError, ForgeError, NotFoundError, RegistryError, disk_full
from agent_forge.storage.artifacts import weights_size
from agent_forge.storage.schema_sql import SCHEMA_SQL

BUSY_TIMEOUT_MS = 10_000
CORRUPT_FIX = "move it aside and restore a backup; Agent Forge never replaces it silently"
SCHEMA_VERSION = 1  # PRAGMA user_version; 1: paths relative to the workspace root (0 stored them absolute)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ModelRegistry:
    """Read/write access to one workspace's registry database."""

    def __init__(self, path: Path, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        if not self.path.exists() and (readonly or not create):
            raise RegistryError(f"registry {self.path} does not exist",
                                "run `agent-forge run` first or point --workspace at an existing workspace")
        self.conn = self._connect()
        if not readonly:
            self._init_schema()
        self._probe()

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self.path}?mode=ro" if self.readonly else f"file:{self.path}"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS};")
            if not self.readonly:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL;")
                conn.execute("PRAGMA journal_mode=WAL;")
                conn.execute("PRAGMA synchronous=NORMAL;")
            conn.execute("PRAGMA cache_size=-10000;")
            conn.execute("PRAGMA temp_store=MEMORY;")
            return conn
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None

    def _init_schema(self) -> None:
        with self._lock:
            try:
                self.conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA_SQL}")
                if self.conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    self._relativize_paths()
                    self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._rollback()
                raise self._translate(exc) from None

    def _relativize_paths(self) -> None:
        """Migration 0 -> 1 (inside the caller's transaction): every stored path under the workspace,
        here or where the workspace was when it was written, becomes relative to its root."""
        models = self.conn.execute("SELECT model_id, session_id, model_path, metadata_json FROM models").fetchall()
        for row in models:
            metadata = self._stored_paths(json.loads(row["metadata_json"] or "{}"), row["session_id"])
            self.conn.execute("UPDATE models SET model_path = ?, metadata_json = ? WHERE model_id = ?",
                              (self._stored_path(row["model_path"], row["session_id"]),
                               json.dumps(metadata, sort_keys=True, default=str), row["model_id"]))
        runs = self.conn.execute("SELECT session_id, phase_name, artifacts_json FROM phase_runs").fetchall()
        for row in runs:
            if row["artifacts_json"]:
                artifacts = self._stored_paths(json.loads(row["artifacts_json"]), row["session_id"])
                self.conn.execute("UPDATE phase_runs SET artifacts_json = ? WHERE session_id = ? AND phase_name = ?",
                                  (json.dumps(artifacts, sort_keys=True, default=str), row["session_id"],
                                   row["phase_name"]))

    def _probe(self) -> None:
        try:
            self.conn.execute("SELECT count(*) FROM sessions").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: sqlite3.DatabaseError) -> ForgeError:
        text = str(exc).lower()
        if disk_full(exc):  # "database or disk is full": the registry is fine, the disk is not
            return DiskFullError(f"disk full while writing the registry {self.path}", DISK_FULL_FIX)
        if "locked" in text or "busy" in text:
            return RegistryError(f"registry {self.path} is locked by another process",
                                 "wait for the other agent-forge run to finish or stop it")
        if "not a database" in text:  # SQLite reads the header itself: opening the file here would be unsafe
            return RegistryError(f"registry {self.path} is not an SQLite database (corrupt)", CORRUPT_FIX)
        if "no such table" in text:
            return RegistryError(f"registry {self.path} has no Agent Forge tables",
                                 "point --workspace at an Agent Forge workspace")
        return RegistryError(f"registry {self.path} is corrupt ({exc})", CORRUPT_FIX)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise RegistryError("registry was opened read-only", "open it without readonly=True to write")
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._rollback()
                raise self._translate(exc) from None
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return [dict(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from None

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # sessions -----------------------------------------------------------------------------------------
    def create_session(self, session_id: str, preset: str, config: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sessions(session_id, preset, pipeline_config_json, start_time, status,"
                " current_phase, progress_percent) VALUES (?,?,?,?,?,?,?)",
                (session_id, preset, json.dumps(config, sort_keys=True), utc_now(), "running", None, 0.0),
            )

    def update_session(self, session_id: str, **fields: Any) -> None:
        allowed = {"status", "current_phase", "progress_percent", "end_time", "error"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown session fields {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as conn:
            conn.execute(f"UPDATE sessions SET {sets} WHERE session_id = ?", (*fields.values(), session_id))

    def get_session(self, session_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        if not rows:
            raise NotFoundError(f"session '{session_id}' does not exist", "list sessions with `agent-forge sessions`")
        return rows[0]

    def list_sessions(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM sessions ORDER BY start_time DESC, session_id DESC")

    def session_config(self, session_id: str) -> PipelineConfig:
        """The validated configuration a session was created with (what ``resume`` and ``export`` reuse)."""
        return validate_config(json.loads(self.get_session(session_id)["pipeline_config_json"] or "{}"))

    def session_activity(self) -> dict[str, dict[str, Any]]:
        """Per session: the time of its last metric (``last_metric``) and how many it logged (``n_metrics``)."""
        rows = self._query("SELECT session_id, max(time) AS last_metric, count(*) AS n_metrics FROM metrics"
                           " GROUP BY session_id")
        return {r.pop("session_id"): r for r in rows}

    def model_counts(self) -> dict[str, int]:
        """Per session: how many models it registered."""
        rows = self._query("SELECT session_id, count(*) AS n FROM models GROUP BY session_id")
        return {r["session_id"]: r["n"] for r in rows}

    def delete_session(self, session_id: str) -> None:
        with self._write() as conn:
            for table in ("phase_handoffs", "metrics", "phase_runs", "model_parents"):
                conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM models WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    # models -------------------------------------------------------------------------------------------
    def register_model(self, record: dict[str, Any], parents: Iterable[str] = ()) -> str:
        """Insert or replace one model row; ``record`` holds the columns of the models table."""
        row = {**record, "created_at": record.get("created_at") or utc_now()}
        row["model_path"] = self._stored_path(row["model_path"], row["session_id"])
        metadata = self._stored_paths(row.pop("metadata", {}), row["session_id"])
        row["metadata_json"] = json.dumps(metadata, sort_keys=True, default=str)
        row["tags"] = ",".join(row.get("tags") or [])
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._write() as conn:
            conn.execute(f"INSERT OR REPLACE INTO models({cols}) VALUES ({marks})", tuple(row.values()))
            conn.execute("DELETE FROM model_parents WHERE model_id = ?", (row["model_id"],))
            conn.executemany(
                "INSERT INTO model_parents(model_id, parent_id, session_id) VALUES (?,?,?)",
                [(row["model_id"], p, row["session_id"]) for p in parents],
            )
        return row["model_id"]

    def get_model(self, model_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM models WHERE model_id = ?", (model_id,))
        if not rows:
            raise NotFoundError(f"model '{model_id}' does not exist", "list models with `agent-forge models`")
        return self._decode_model(rows[0])

    @property
    def workspace_root(self) -> Path | None:
        """The root of the workspace this registry belongs to (``<root>/registry/<file>``), else None."""
        return self.path.parent.parent if self.path.parent.name == "registry" else None

    def model_folder(self, stored: str, session_id: str) -> Path:
        """Where a model row's artifact lives in the workspace that holds this registry.

        A relative path is taken from this root. An absolute one stored under another workspace root (a
        registry of schema 0 opened read-only in a moved or copied workspace) is read at the same
        ``sessions/<session>/...`` place under this one, so the files verified and loaded are this
        workspace's. Other paths are returned unchanged.
        """
        path, root = Path(stored), self.workspace_root
        if root is None:
            return path
        if not path.is_absolute():
            return root / path
        if path.resolve() == root.resolve() or root.resolve() in path.resolve().parents:
            return path
        parts = path.parts
        for i in range(len(parts) - 2, -1, -1):
            if parts[i] == "sessions" and parts[i + 1] == session_id:
                return root.joinpath(*parts[i:])
        return path

    def _stored_path(self, path: str, session_id: str) -> str:
        """What the registry stores for a path: relative to the workspace root when it lies inside the
        workspace (now, or where it was when written), else the path unchanged."""
        root = self.workspace_root
        if root is None or not Path(path).is_absolute():
            return path
        located = self.model_folder(path, session_id).resolve()
        if root.resolve() not in located.parents:
            return path
        return located.relative_to(root.resolve()).as_posix()

    def _stored_paths(self, values: dict[str, Any], session_id: str) -> dict[str, Any]:
        """``_stored_path`` applied to the absolute-path strings among a dict's values."""
        return {k: self._stored_path(v, session_id) if isinstance(v, str) and Path(v).is_absolute() else v
                for k, v in values.items()}

    def _read_paths(self, values: dict[str, Any], session_id: str) -> dict[str, Any]:
        """The stored relative paths of a dict's values (``sessions/<session>/...``) made absolute again."""
        prefix = f"sessions/{session_id}/"
        return {k: str(self.model_folder(v, session_id)) if isinstance(v, str) and v.startswith(prefix) else v
                for k, v in values.items()}

    def _decode_model(self, row: dict[str, Any]) -> dict[str, Any]:
        row["model_path"] = str(self.model_folder(row["model_path"], row["session_id"]))
        row["metadata"] = self._read_paths(json.loads(row.pop("metadata_json") or "{}"), row["session_id"])
        # one size everywhere, also for rows written when the column held the whole folder's bytes
        row["size_mb"], row["size_counts"] = weights_size(row["metadata"], row.get("parameters") or 0)
        row["tags"] = [t for t in (row.get("tags") or "").split(",") if t]
        row["parents"] = self.parent_ids(row["model_id"])
        return row

    def parent_ids(self, model_id: str) -> list[str]:
        rows = self._query("SELECT parent_id FROM model_parents WHERE model_id = ? ORDER BY parent_id", (model_id,))
        return [r["parent_id"] for r in rows]

    def child_ids(self, model_id: str) -> list[str]:
        rows = self._query("SELECT model_id FROM model_parents WHERE parent_id = ? ORDER BY model_id", (model_id,))
        return [r["model_id"] for r in rows]

    def search_models(self, phase: str | None = None, session: str | None = None,
                      tag: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        for column, value in (("phase_name", phase), ("session_id", session)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if tag is not None:
            clauses.append("(',' || tags || ',') LIKE ?")
            params.append(f"%,{tag},%")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT * FROM models {where} ORDER BY created_at, model_id", params)
        return [self._decode_model(r) for r in rows]

    def delete_model(self, model_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM model_parents WHERE model_id = ?", (model_id,))
            conn.execute("DELETE FROM models WHERE model_id = ?", (model_id,))

    # hand-offs ----------------------------------------------------------------------------------------
    def record_handoff(self, session_id: str, source: str, target: str, source_ids: list[str],
                       status: str, checks: dict[str, Any], forced: bool = False) -> str:
        handoff_id = f"{session_id}:{source}->{target}"
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO phase_handoffs(handoff_id, session_id, source_phase, target_phase,"
                " source_model_id, target_model_id, handoff_timestamp, validation_status,"
                " validation_metrics_json, forced) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (handoff_id, session_id, source, target, ",".join(source_ids), "", utc_now(), status,
                 json.dumps(checks, sort_keys=True, default=str), int(forced)),
            )
        return handoff_id

    def handoff_history(self, session_id: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE session_id = ?", (session_id,)) if session_id else ("", ())
        rows = self._query(f"SELECT * FROM phase_handoffs {where} ORDER BY handoff_timestamp", params)
        for row in rows:
            row["checks"] = json.loads(row.pop("validation_metrics_json") or "{}")
            row["forced"] = bool(row["forced"])
        return rows

    # phase runs (D6 record and resume state) ----------------------------------------------------------
    def upsert_phase_run(self, session_id: str, phase_name: str, **fields: Any) -> None:
        existing = self._query("SELECT * FROM phase_runs WHERE session_id = ? AND phase_name = ?",
                               (session_id, phase_name))
        row = existing[0] if existing else {"session_id": session_id, "phase_name": phase_name}
        if isinstance(fields.get("artifacts_json"), dict):
            fields["artifacts_json"] = self._stored_paths(fields["artifacts_json"], session_id)
        for key, value in fields.items():
            row[key] = json.dumps(value, sort_keys=True, default=str) if key.endswith("_json") else value
        cols = ", ".join(row)
        with self._write() as conn:
            conn.execute(f"INSERT OR REPLACE INTO phase_runs({cols}) VALUES ({', '.join('?' for _ in row)})",
                         tuple(row.values()))

    def phase_runs(self, session_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM phase_runs WHERE session_id = ? ORDER BY phase_index", (session_id,))
        for row in rows:
            for key in [k for k in row if k.endswith("_json")]:
                row[key[: -len("_json")]] = json.loads(row.pop(key) or "null")
            if isinstance(row.get("artifacts"), dict):
                row["artifacts"] = self._read_paths(row["artifacts"], session_id)
        return rows

    # metrics ------------------------------------------------------------------------------------------
    def log_metrics(self, rows: Iterable[tuple[str, str, str, int, str, float]]) -> None:
        """Insert (session, phase, model, step, name, value); a repeated key replaces the old value."""
        now = time.time()
        batch = [(*r, now) for r in rows]
        if not batch:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO metrics(session_id, phase, model, step, name, value, time)"
                " VALUES (?,?,?,?,?,?,?)", batch)

    def metrics(self, session_id: str, phase: str | None = None, name: str | None = None,
                model: str | None = None) -> list[dict[str, Any]]:
        clauses, params = ["session_id = ?"], [session_id]
        for column, value in (("phase", phase), ("name", name), ("model", model)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT * FROM metrics WHERE {' AND '.join(clauses)} ORDER BY phase, model, name, step"
        return self._query(sql, params)

    def metric_phases(self, session_id: str) -> set[str]:
        """The phases that logged at least one metric in a session."""
        rows = self._query("SELECT DISTINCT phase FROM metrics WHERE session_id = ?", (session_id,))
        return {r["phase"] for r in rows}

    def delete_metrics_after(self, session_id: str, phase: str, model: str, step: int) -> None:
        """Drop metrics logged past a checkpoint, so a resumed run rewrites them (no duplicates)."""
        with self._write() as conn:
            conn.execute("DELETE FROM metrics WHERE session_id=? AND phase=? AND model=? AND step>?",
                         (session_id, phase, model, step))

    # maintenance --------------------------------------------------------------------------------------
    def checkpoint_wal(self) -> None:
        with self._lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE);")

    def vacuum_incremental(self, pages: int = 100) -> None:
        with self._lock:
            self.conn.execute(f"PRAGMA incremental_vacuum({int(pages)});")

    def file_sizes(self) -> dict[str, int]:
        wal = Path(f"{self.path}-wal")
        return {"db_bytes": self.path.stat().st_size, "wal_bytes": wal.stat().st_size if wal.exists() else 0}
