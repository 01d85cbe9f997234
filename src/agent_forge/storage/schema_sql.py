"""SQL schema of the registry: the spec's three tables (3.1.2) plus metrics, phase runs and lineage."""

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    phase_name TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_path TEXT NOT NULL,
    size_mb REAL,
    parameters INTEGER,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    metadata_json TEXT,
    metadata_sha256 TEXT,
    tags TEXT
);
CREATE INDEX IF NOT EXISTS idx_session ON models(session_id);
CREATE INDEX IF NOT EXISTS idx_phase ON models(phase_name);
CREATE INDEX IF NOT EXISTS idx_created ON models(created_at);

CREATE TABLE IF NOT EXISTS model_parents (
    model_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    PRIMARY KEY (model_id, parent_id)
);

CREATE TABLE IF NOT EXISTS phase_handoffs (
    handoff_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    source_phase TEXT NOT NULL,
    target_phase TEXT NOT NULL,
    source_model_id TEXT NOT NULL,
    target_model_id TEXT NOT NULL,
    handoff_timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    validation_status TEXT,
    validation_metrics_json TEXT,
    forced INTEGER DEFAULT 0
);

CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    preset TEXT,
    pipeline_config_json TEXT,
    start_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    end_time TIMESTAMP,
    status TEXT,
    current_phase TEXT,
    progress_percent REAL,
    error TEXT
);

CREATE TABLE IF NOT EXISTS phase_runs (
    session_id TEXT NOT NULL,
    phase_name TEXT NOT NULL,
    phase_index INTEGER,
    status TEXT,
    started_at TIMESTAMP,
    ended_at TIMESTAMP,
    duration_seconds REAL,
    output_models_json TEXT,
    metrics_json TEXT,
    artifacts_json TEXT,
    before_json TEXT,
    after_json TEXT,
    error TEXT,
    PRIMARY KEY (session_id, phase_name)
);

CREATE TABLE IF NOT EXISTS metrics (
    session_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    model TEXT NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    time REAL,
    PRIMARY KEY (session_id, phase, model, step, name)
);
CREATE INDEX IF NOT EXISTS idx_metrics_name ON metrics(session_id, name);
"""
