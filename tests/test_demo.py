"""``maskface demo``: the end-to-end run on the built-in faces (shortened here), and what it
prints and writes for a person to read."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from maskface.demo import NO_FACE_PHOTO, _count, _ExpectedNoFace, _failures, _heartbeat


def test_failure_counts_read_as_a_sentence():
    assert _failures({}) == "none"
    text = _failures({"mouth-uncovered": 2, "eyes-covered": 1})
    assert text.startswith("3: mouth-uncovered 2, eyes-covered 1 (")
    assert "{" not in text and "failures.jsonl" in text
    assert _failures({"mouth-uncovered": 12}).startswith("12, all mouth-uncovered (")
    assert (_count(1, "photo"), _count(3, "photo"), _count(0, "face")) == (
        "1 photo", "3 photos", "0 faces")


def test_heartbeat_speaks_when_the_log_is_silent(caplog):
    caplog.set_level(logging.INFO, logger="maskface")
    with _heartbeat(True, every=0.2) as now_in:
        now_in("2/4 train")
        time.sleep(0.7)
    beats = [r.getMessage() for r in caplog.records if "still in" in r.getMessage()]
    assert beats and "2/4 train" in beats[0]
    caplog.clear()
    with _heartbeat(False, every=0.2):
        time.sleep(0.4)
    assert not caplog.records


def test_heartbeat_is_quiet_while_others_log(caplog):
    caplog.set_level(logging.INFO, logger="maskface")
    other = logging.getLogger("maskface.train")
    with _heartbeat(True, every=0.5):
        for _ in range(8):
            other.info("step")
            time.sleep(0.1)
    assert not [r for r in caplog.records if "still in" in r.getMessage()]


def test_the_expected_faceless_photo_is_not_a_warning():
    def record(msg: str, *args) -> logging.LogRecord:
        return logging.LogRecord("maskface.unmask", logging.WARNING, __file__, 1, msg,
                                 args, None)

    r = record("%s: no face found (%s); copied unchanged", f"/x/photos/{NO_FACE_PHOTO}", "none")
    assert _ExpectedNoFace().filter(r)
    assert r.levelno == logging.INFO and "as expected" in r.getMessage()
    other = record("%s: no face found (%s); copied unchanged", "/x/photos/mine.png", "none")
    _ExpectedNoFace().filter(other)
    assert other.levelno == logging.WARNING


def test_demo_runs_every_step_and_writes_its_index(tmp_path, caplog):
    pytest.importorskip("torch")
    pytest.importorskip("mediapipe")
    from click.testing import CliRunner

    from maskface.cli import main

    caplog.set_level(logging.INFO)
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--steps", "4", "--jobs", "1"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    steps = json.loads((out / "demo.json").read_text())
    assert steps["generate"]["masked"] == steps["generate"]["faces"] == 21
    assert steps["generate"]["pairs"] >= 200
    assert steps["train"]["step"] == 4
    assert steps["eval"]["samples"] > 0
    assert {"masked-input", "telea", "navier-stokes", "trained here", "bundled",
            "bundled +composite"} <= set(steps["eval"]["methods"])
    u = steps["unmask"]
    # The bundled model restores the masked photos; a mask it misses is counted, not hidden.
    assert (u["photos"], u["no_face"], u["model"]) == (3, 1, "bundled")
    assert u["photos_restored"] >= 1 and u["photos_restored"] + u["no_mask"] == 2
    for f in ("index.md", "eval/report.md", "eval/sheet.png", "unmask/sheets/sheet-01.jpg",
              "unmask/summary.json", "run/checkpoints/last.pt"):
        assert (out / f).exists(), f
    index = (out / "index.md").read_text()
    assert "unmask/sheets/sheet-01.jpg" in index and "eval/sheet.png" in index
    assert "{" not in index and not re.search(r"(?<!\d)1 (photos|faces|pairs)\b", index)
    # The photo without a face is there on purpose: no warning about it.
    assert not [r for r in caplog.records
                if r.levelno >= logging.WARNING and NO_FACE_PHOTO in r.getMessage()]


def test_the_demo_describes_the_bundled_file_it_ran_from_the_files_own_metadata(
        tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import torch

    from maskface import demo
    from maskface.training import checkpoint
    from maskface.training.weights import save_weights

    f = tmp_path / "model.safetensors"
    save_weights(f, {"w": torch.zeros(1)}, {
        "model_config": json.dumps({"width": 24, "depth": 4}), "image_size": "96",
        "machine": "a test box", "train_command": "a", "finetune_command_1": "b",
        "finetune_command_2": "c", "average_command": "d"})
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", f)
    said = demo._bundled_about()
    assert "width 24, depth 4, 96 px" in said and "3 training runs and 1 weight average" in said
    assert "a test box" in said
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", tmp_path / "absent.safetensors")
    assert "No bundled model" in demo._bundled_about()
