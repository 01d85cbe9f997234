"""``status`` with what runs now and the time left; ``models``, ``sessions`` and ``show`` in 80 columns with
one size per model."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_forge.cli import main
from agent_forge.cli.render import fit, out
from agent_forge.storage.artifacts import FLOAT_WEIGHTS
from agent_forge.tracking.progress import ProgressReporter
from support.ui_workspace import DONE, LIVE, FilledWorkspace, fill_workspace


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> FilledWorkspace:
    return fill_workspace(tmp_path_factory.mktemp("status_ws"))


def _run(capsys, root: Path, *args: str) -> str:
    main(["--workspace", str(root), *args])
    return capsys.readouterr().out


def _words(text: str) -> str:
    return " ".join(text.split())  # lines longer than the terminal wrap


def test_status_of_a_running_session_gives_the_current_bar_and_the_time_left(filled, capsys) -> None:
    """DONE (same preset) took 105+120+135+150+165 s for the five phases after quietstar: 11m15s."""
    heartbeat = filled.workspace.progress_path(LIVE)
    with ProgressReporter(quiet=True, heartbeat=heartbeat, beat_s=0.0) as reporter, \
            reporter.task("phases", 8, completed=2), reporter.task("quietstar:train", 100) as bar:
        bar.note("loss 2.10")
        bar.advance(30)
        text = _words(_run(capsys, filled.root, "status", LIVE))
    assert "now: quietstar:train 30/100 (30%), elapsed " in text and "(loss 2.10)" in text
    assert "time left: about " in text and "5 later phase(s) 11m15s as earlier smoke runs took" in text
    assert "eta: unknown" not in _run(capsys, filled.root, "status", LIVE)  # the file stays after the run
    heartbeat.unlink()
    assert "eta: unknown (no progress file yet)" in _words(_run(capsys, filled.root, "status", LIVE))
    assert "time left" not in _run(capsys, filled.root, "status", DONE)


def test_tables_fit_80_columns_with_whole_ids(filled, capsys) -> None:
    assert out.width == 80  # not a terminal: Rich's default width
    for command in ("models", "sessions", "status"):
        text = _run(capsys, filled.root, command)
        assert max(len(line) for line in text.splitlines()) <= 80, command
    models = _run(capsys, filled.root, "models")
    assert all(model_id in models for model_id in filled.models.values())  # each id whole, on one line
    assert "config, tokenizer and metadata files" in " ".join(models.split())


def test_show_gives_one_size_and_what_it_counts(filled, capsys) -> None:
    text = _run(capsys, filled.root, "show", filled.models["evomerge/champion"])
    assert text.count("size MB") == 1 and "size_mb" not in text
    assert " ".join(FLOAT_WEIGHTS.split()[:2]) in text


def test_fit_keeps_both_ends() -> None:
    model_id = "20261204-071631-default-71a939__cognate__adaptive_computation"
    assert fit(model_id, 80) == model_id
    short = fit(model_id, 40)
    assert len(short) == 40 and short.startswith("20261204-") and short.endswith("adaptive_computation")
    assert "..." in short
