"""Judge two ``maskface unmask`` outputs by eye without knowing which is which.

    python bench/blind_compare.py pages OUT_A OUT_B --out PAGES [--first 0 --count 96]
    python bench/blind_compare.py score PAGES/judged.csv --key PAGES/key.json

``pages`` writes PNG pages of six rows, each a face cropped from the photo (before | left |
right), where left and right are the two runs' results in an order drawn per photo from a
fixed seed, and ``key.json`` (kept from the judge) saying which side is which. The judge
fills a CSV with the header ``photo,left,right,better[,left_removed,right_removed]``:
categories ``gone`` / ``partly`` / ``left`` (of the mask) per side, ``better`` one of
``left`` / ``right`` / ``same``, and optionally a lenient ``yes`` / ``no``. ``score`` undoes
the shuffle and prints one JSON object: the counts per run (A, B) and how often each was the
better. How the categories are defined is the judge's rule; docs/results.md states the one
used for the bundled model.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROWS_PER_PAGE = 6
HEIGHT = 240  # px of each crop on a page


def _summary(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["results"]


def _face_box(result: dict, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The first face's region (from its eyes and mouth), or the whole photo without a face."""
    faces = result.get("faces") or []
    h, w = shape[:2]
    if not faces:
        return 0, 0, w, h
    pts = np.array(faces[0]["eyes_mouth"], np.float64)
    c = pts.mean(0)
    s = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 20.0) * 2.4
    return (int(max(0, c[0] - s / 2)), int(max(0, c[1] - 0.45 * s)),
            int(min(w, c[0] + s / 2)), int(min(h, c[1] + 0.6 * s)))


def _row(name: str, tiles: list[np.ndarray]) -> np.ndarray:
    tiles = [cv2.resize(t, (max(1, round(t.shape[1] * HEIGHT / t.shape[0])), HEIGHT))
             for t in tiles]
    row = np.hstack([np.pad(t, ((0, 0), (0, 6), (0, 0)), constant_values=255) for t in tiles])
    label = np.full((22, row.shape[1], 3), 255, np.uint8)
    cv2.putText(label, f"{name}   before | left | right", (4, 16), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (0, 0, 0), 1)
    return np.vstack([label, row])


def pages(a: Path, b: Path, out: Path, first: int, count: int, seed: int) -> dict:
    """Write the pages and key.json; return what was written."""
    out.mkdir(parents=True, exist_ok=True)
    in_b = {Path(r["source"]).name: r for r in _summary(b)}
    rng = random.Random(seed)
    rows, key, skipped = [], {}, []
    for ra in _summary(a)[first:first + count]:
        name = Path(ra["source"]).name
        rb = in_b.get(name)
        if rb is None:
            skipped.append(f"{name}: not in {b}")
            continue
        before = cv2.imread(ra["source"])
        # A photo left unchanged keeps its own file name; outputs may be relative to --out.
        after_a = cv2.imread(str(a / Path(ra["output"]).name))
        after_b = cv2.imread(str(b / Path(rb["output"]).name))
        if before is None or after_a is None or after_b is None:
            # Sources are as unmask was given them: run from the folder unmask ran in.
            skipped.append(f"{name}: an image did not read")
            continue
        x0, y0, x1, y1 = _face_box(ra if ra.get("faces") else rb, before.shape)
        tiles = [im[y0:y1, x0:x1] for im in (before, after_a, after_b)]
        swap = rng.random() < 0.5
        key[name] = "B|A" if swap else "A|B"
        if swap:
            tiles = [tiles[0], tiles[2], tiles[1]]
        rows.append(_row(name, tiles))
    for start in range(0, len(rows), ROWS_PER_PAGE):
        chunk = rows[start:start + ROWS_PER_PAGE]
        w = max(r.shape[1] for r in chunk)
        page = np.vstack([np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255)
                          for r in chunk])
        cv2.imwrite(str(out / f"page-{first + start:04d}.png"), page)
    (out / "key.json").write_text(json.dumps({"A": str(a), "B": str(b), "sides": key},
                                             indent=1) + "\n")
    return {"photos": len(rows), "pages": -(-len(rows) // ROWS_PER_PAGE), "out": str(out),
            "skipped": skipped}


CATEGORIES = ("gone", "partly", "left")
BETTER = ("left", "right", "same")
REMOVED = ("yes", "no", "")


def _bad_values(row: dict) -> str:
    """What in a judged row is none of the allowed values ('' when all are): a typo must
    not be counted as something it is not."""
    wrong = [f"{k}={row.get(k)!r}" for k in ("left", "right") if row.get(k) not in CATEGORIES]
    if row.get("better") not in BETTER:
        wrong.append(f"better={row.get('better')!r}")
    wrong += [f"{k}={row[k]!r}" for k in ("left_removed", "right_removed")
              if row.get(k) is not None and row[k] not in REMOVED]
    return ", ".join(wrong)


def score(judged: Path, key_file: Path) -> dict:
    """Counts per run from a judged CSV and the key that undoes the shuffle."""
    key = json.loads(key_file.read_text())
    sides = key["sides"]
    counts = {"A": Counter(), "B": Counter()}
    removed = {"A": Counter(), "B": Counter()}
    better = Counter()
    with judged.open(newline="") as f:
        for r in csv.DictReader(f):
            name = r["photo"] if r["photo"].endswith(".jpg") else f"{r['photo']}.jpg"
            order = sides.get(name, sides.get(r["photo"]))
            if order is None:
                raise SystemExit(f"{r['photo']} is not in {key_file}")
            bad = _bad_values(r)
            if bad:
                raise SystemExit(f"{judged}: {r['photo']}: {bad} (see this script's help)")
            left, right = order.split("|")
            counts[left][r["left"]] += 1
            counts[right][r["right"]] += 1
            if r.get("left_removed"):
                removed[left][r["left_removed"]] += 1
                removed[right][r["right_removed"]] += 1
            better[{"left": left, "right": right, "same": "same"}[r["better"]]] += 1
    return {"A": key["A"], "B": key["B"], "photos": sum(better.values()),
            "categories": {k: dict(v) for k, v in counts.items()},
            "removed_lenient": {k: dict(v) for k, v in removed.items() if v},
            "better": dict(better)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pages", help="write blind comparison pages and their key")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=96)
    p.add_argument("--seed", type=int, default=30)
    s = sub.add_parser("score", help="undo the shuffle of a judged CSV and count")
    s.add_argument("judged", type=Path)
    s.add_argument("--key", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "pages":
        res = pages(args.a, args.b, args.out, args.first, args.count, args.seed)
    else:
        res = score(args.judged, args.key)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
