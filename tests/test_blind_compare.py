"""bench/blind_compare.py: the pages hide which run is which, and the score undoes it."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench" / "blind_compare.py"


def _module():
    spec = importlib.util.spec_from_file_location("blind_compare", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(root: Path, name: str, photos: list[Path], shade: int) -> Path:
    """A stand-in unmask output: each photo 'restored' to a flat shade, and its summary."""
    out = root / name
    out.mkdir()
    results = []
    for p in photos:
        cv2.imwrite(str(out / f"{p.stem}.png"), np.full((60, 50, 3), shade, np.uint8))
        results.append({"source": str(p), "output": f"{name}/{p.stem}.png", "status": "restored",
                        "faces": [{"eyes_mouth": [[15, 20], [35, 20], [25, 40]]}]})
    (out / "summary.json").write_text(json.dumps({"results": results}))
    return out


def test_pages_shuffle_the_sides_and_the_score_undoes_it(tmp_path):
    bc = _module()
    photos = []
    for i in range(10):
        p = tmp_path / f"{i:04d}.jpg"
        cv2.imwrite(str(p), np.full((60, 50, 3), 128, np.uint8))
        photos.append(p)
    a = _run(tmp_path, "a", photos, 40)
    b = _run(tmp_path, "b", photos, 220)
    res = bc.pages(a, b, tmp_path / "pages", 0, 10, seed=1)
    assert res == {"photos": 10, "pages": 2, "out": str(tmp_path / "pages"), "skipped": []}
    key = json.loads((tmp_path / "pages" / "key.json").read_text())
    assert set(key["sides"].values()) == {"A|B", "B|A"}, "the order must vary per photo"

    # A judge who sees the pages only: the brighter result is "gone" and better.
    rows = []
    names = sorted(key["sides"])
    for start in range(0, 10, 6):
        page = cv2.imread(str(tmp_path / "pages" / f"page-{start:04d}.png"),
                          cv2.IMREAD_GRAYSCALE)
        for r, name in enumerate(names[start:start + 6]):
            top = r * (22 + 240 + 4) + 22  # a label, the crops, a gap
            left = page[top + 100:top + 140, 206 + 80:206 + 120].mean()
            right = page[top + 100:top + 140, 412 + 80:412 + 120].mean()
            bright_left = left > right
            rows.append({"photo": name, "left": "gone" if bright_left else "partly",
                         "right": "partly" if bright_left else "gone",
                         "better": "left" if bright_left else "right"})
    judged = tmp_path / "judged.csv"
    with judged.open("w", newline="") as f:
        w = csv.DictWriter(f, ["photo", "left", "right", "better"])
        w.writeheader()
        w.writerows(rows)
    s = bc.score(judged, tmp_path / "pages" / "key.json")
    assert s["categories"] == {"A": {"partly": 10}, "B": {"gone": 10}}
    assert s["better"] == {"B": 10} and s["photos"] == 10

    # A typo is refused, not counted as "same".
    rows[0]["better"] = "rigth"
    with judged.open("w", newline="") as f:
        w = csv.DictWriter(f, ["photo", "left", "right", "better"])
        w.writeheader()
        w.writerows(rows)
    try:
        bc.score(judged, tmp_path / "pages" / "key.json")
    except SystemExit as e:
        assert "rigth" in str(e)
    else:
        raise AssertionError("a judged CSV with a typo was scored")
