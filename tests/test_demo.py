"""``maskface demo``: the end-to-end run on the built-in faces (shortened here)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("mediapipe")

from click.testing import CliRunner  # noqa: E402

from maskface.cli import main  # noqa: E402


def test_demo_runs_every_step_and_writes_its_index(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--steps", "4", "--jobs", "1"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    steps = json.loads((out / "demo.json").read_text())
    assert steps["generate"]["masked"] == steps["generate"]["faces"] == 21
    assert steps["generate"]["pairs"] >= 200
    assert steps["train"]["step"] == 4
    assert steps["eval"]["samples"] > 0
    assert {"masked-input", "telea", "navier-stokes", "ra-unet"} <= set(steps["eval"]["methods"])
    u = steps["unmask"]
    assert (u["photos"], u["photos_restored"], u["no_face"], u["faces_restored"]) == (3, 2, 1, 2)
    for f in ("index.md", "eval/report.md", "eval/sheet.png", "unmask/sheets/sheet-01.jpg",
              "unmask/summary.json", "run/checkpoints/last.pt"):
        assert (out / f).exists(), f
    assert "unmask/sheets/sheet-01.jpg" in (out / "index.md").read_text()
