"""Face finding on real photos: how many faces `detect_faces` finds, how fast, and by which stage.

    python bench/detect.py [--src ../shared/data/real-masked-dev] [--limit N] [--draw DIR]
                           [--per-photo FILE] [--baselines] [--mask-model bundled|PATH|none]

Runs `maskgen.find_faces.detect_faces` over every image of a folder (one process, models loaded
before timing starts) and prints one JSON object: photos, photos with a face, found rate, faces
in all, milliseconds per photo (wall and CPU; mean, p50, p95), the stage that found each face,
each miss with its reason, the photos where more than one face was found (with each face's eye
distance and score), and the same counts for the even- and odd-numbered photos apart (the
thresholds were tuned on the even ones; the odd ones are the held-out check).

`--draw DIR` writes contact sheets to count by eye: `multi-NN.png` (the photos with more than
one face), `one-NN.png` and `none-NN.png`. Each face has a numbered box (green), its eye and
mouth anchors (red: image-left eye, blue: image-right eye, yellow: mouth) and its kept score;
the white bar in each cell's corner is the smallest eye distance `detect_faces` looks for
(MIN_EYE_DISTANCE), at that photo's scale, to judge which missed faces were restorable.

`--per-photo FILE` writes one JSON line per photo (each face's landmark box, score, stage,
evidence and a hash of its landmarks; a miss's reason): two runs' files are equal line for
line exactly when a change left detection as it was.

`--mask-model` (default: the bundled model, as `unmask` uses it) is the restoring model whose
mask head gives `detect_faces` its mask opinion; `none` measures the cascade alone, and so
does a machine without torch (the JSON's `mask_model` says which ran).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-masked-dev"


CELL = 320  # a sheet cell's side: scenes (~256 px wide) are shown a little enlarged
COLUMNS, ROWS = 4, 4


def draw_cell(rgb: np.ndarray, dets: list, key: str, min_iod: float) -> np.ndarray:
    """One sheet cell: the photo fitted into CELL x CELL, each face boxed and numbered with its
    anchors and score, the key on top and a bar MIN_EYE_DISTANCE photo pixels long."""
    import cv2

    from maskface.maskgen.facepoints import anchor_points

    h, w = rgb.shape[:2]
    k = (CELL - 16) / max(h, w)
    img = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))),
                     interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    cell = np.full((CELL, CELL, 3), 40, np.uint8)
    oy = 16
    cell[oy:oy + img.shape[0], :img.shape[1]] = img
    for i, d in enumerate(dets, 1):
        pts = d.points[:, :2] * k + (0, oy)
        (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
        cv2.rectangle(cell, (x0, y0), (x1, y1), (0, 255, 0), 1)
        for (x, y), colour in zip(anchor_points(d.points) * k + (0, oy),
                                  [(255, 0, 0), (0, 0, 255), (255, 255, 0)], strict=True):
            cv2.circle(cell, (int(x), int(y)), 2, colour, -1)
        cv2.putText(cell, f"{i}:{d.score:.2f}", (max(0, x0), max(oy + 9, y0 - 2)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 0, 255), 1)
    cv2.putText(cell, f"{key} {w}x{h} faces {len(dets)}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (255, 255, 255), 1)
    bar = max(1, round(min_iod * k))
    cv2.rectangle(cell, (CELL - 4 - bar, CELL - 8), (CELL - 4, CELL - 5), (255, 255, 255), -1)
    return cell


def write_sheets(cells: list[np.ndarray], folder: Path, name: str) -> list[str]:
    """Cells in sheets of COLUMNS x ROWS as ``name-NN.png`` (PNG keeps small faces sharp);
    the paths written."""
    import cv2

    paths = []
    per = COLUMNS * ROWS
    for n, start in enumerate(range(0, len(cells), per), 1):
        part = cells[start:start + per]
        part += [np.zeros_like(part[0])] * (per - len(part))
        sheet = np.concatenate([np.concatenate(part[r * COLUMNS:(r + 1) * COLUMNS], axis=1)
                                for r in range(ROWS)], axis=0)
        path = folder / f"{name}-{n:02d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    return paths


def counts(rows: list[dict]) -> dict:
    """Found rate and face counts of some photos' rows (``key``, ``faces``)."""
    photos = len(rows)
    found = sum(r["faces"] > 0 for r in rows)
    return {"photos": photos, "photos_with_face": found,
            "found_rate": round(found / max(photos, 1), 4),
            "faces_total": sum(r["faces"] for r in rows),
            "photos_with_several_faces": sum(r["faces"] > 1 for r in rows)}


def is_even(key: str) -> bool:
    """Whether a photo is in the tuning half: its name's last digits are even (0000.jpg)."""
    digits = "".join(c for c in Path(key).stem if c.isdigit())
    return not digits or int(digits) % 2 == 0


def main() -> None:
    from maskface.maskgen.decode import BadImage, decode_image
    from maskface.maskgen.facepoints import eye_distance
    from maskface.maskgen.find_faces import MIN_EYE_DISTANCE, detect_faces
    from maskface.maskgen.landmarks import NoFace
    from maskface.maskgen.sources import read_source, resolve_source

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--max-faces", type=int, default=None)
    ap.add_argument("--draw", default=None,
                    help="write contact sheets (multi-, one-, none-NN.png) into this folder")
    ap.add_argument("--per-photo", default=None,
                    help="write one JSON line per photo to this file: each face's box, score, "
                         "stage, evidence and a hash of its landmarks (to compare two runs)")
    ap.add_argument("--baselines", action="store_true",
                    help="also count (and time) photos where one plain FaceMesh pass, and the "
                         "generator's detect_landmarks (with its retries, unchecked), find a face")
    ap.add_argument("--mask-model", default="bundled",
                    help="the restoring model whose mask head gives detect_faces its mask "
                         "opinion, as unmask does: 'bundled', a checkpoint or .safetensors "
                         "path, or 'none' for the cascade alone")
    args = ap.parse_args()
    if not Path(args.src).exists():
        sys.exit(f"no source at {args.src} (pass --src)")
    _, items = resolve_source(args.src)
    items = sorted(items, key=lambda i: i.key)[: args.limit] if args.limit else items
    if not items:
        sys.exit(f"no images in {args.src}")
    if args.draw:
        Path(args.draw).mkdir(parents=True, exist_ok=True)

    opinion = None
    if args.mask_model != "none":
        try:
            from maskface.cli import _bundled_model
            from maskface.training.mask_opinion import mask_opinion
            from maskface.training.predict import Predictor
        except ImportError as e:  # the training half's torch is not installed
            args.mask_model = f"none ({e.name} is not installed)"
        else:
            path = _bundled_model() if args.mask_model == "bundled" else args.mask_model
            opinion = mask_opinion(Predictor.load(path, "cpu"))

    # Load the models first (a blank picture runs every stage, a face the checks) so that the
    # timings are the steady state.
    from skimage import data

    t0 = time.perf_counter()
    with contextlib.suppress(NoFace):
        detect_faces(np.full((64, 64, 3), 128, np.uint8), mask_opinion=opinion)
        detect_faces(data.astronaut(), mask_opinion=opinion)
    startup_ms = 1000 * (time.perf_counter() - t0)

    ms: list[float] = []
    cpu_ms: list[float] = []
    faces_by_stage: Counter = Counter()
    photos_by_stage: Counter = Counter()
    misses, unreadable, with_face, faces_total = [], [], 0, 0
    rows: list[dict] = []
    records: list[dict] = []
    several: list[dict] = []
    cells: dict[str, list[np.ndarray]] = {"multi": [], "one": [], "none": []}
    baseline: Counter = Counter()
    baseline_ms: dict[str, list[float]] = {"facemesh_once": [], "detect_landmarks": []}
    for item in items:
        try:
            rgb = decode_image(read_source(item))
        except (OSError, BadImage) as e:
            unreadable.append({"key": item.key, "reason": getattr(e, "reason", type(e).__name__)})
            continue
        t, c = time.perf_counter(), time.process_time()
        try:
            dets = detect_faces(rgb, max_faces=args.max_faces, mask_opinion=opinion)
        except NoFace as e:
            dets = []
            misses.append({"key": item.key, "size": f"{rgb.shape[1]}x{rgb.shape[0]}",
                           "reason": e.reason, "detail": e.detail})
        ms.append(1000 * (time.perf_counter() - t))
        cpu_ms.append(1000 * (time.process_time() - c))
        if args.baselines:
            baseline.update(baselines(rgb, baseline_ms))
        rows.append({"key": item.key, "faces": len(dets)})
        if args.per_photo:
            records.append(photo_record(item.key, dets, misses[-1] if not dets else None))
        if dets:
            with_face += 1
            faces_total += len(dets)
            faces_by_stage.update(d.stage for d in dets)
            photos_by_stage[dets[0].stage] += 1
        if len(dets) > 1:
            several.append({"key": item.key, "faces": [
                {"eye_distance": round(eye_distance(d.points), 1), "score": round(d.score, 3),
                 "stage": d.stage} for d in dets]})
        if args.draw:
            group = "multi" if len(dets) > 1 else "one" if dets else "none"
            cells[group].append(draw_cell(rgb, dets, item.key, MIN_EYE_DISTANCE))
    sheets = {name: write_sheets(c, Path(args.draw), name)
              for name, c in cells.items() if c} if args.draw else {}

    if args.per_photo:
        Path(args.per_photo).write_text("".join(json.dumps(r) + "\n" for r in records))
    photos = len(ms)
    print(json.dumps({
        "bench": "detect", "src": args.src, "mask_model": args.mask_model, "photos": photos,
        "unreadable": unreadable,
        "photos_with_face": with_face, "found_rate": round(with_face / max(photos, 1), 4),
        "faces_total": faces_total,
        "photos_with_several_faces": len(several),
        # Thresholds were tuned on the even-numbered photos; the odd ones are held out.
        "even": counts([r for r in rows if is_even(r["key"])]),
        "odd": counts([r for r in rows if not is_even(r["key"])]),
        "ms_per_photo": {"mean": round(float(np.mean(ms)), 1),
                         "p50": round(float(np.percentile(ms, 50)), 1),
                         "p95": round(float(np.percentile(ms, 95)), 1),
                         "max": round(float(np.max(ms)), 1)} if ms else None,
        # CPU time of the process (MediaPipe's threads included): steadier than wall time on a
        # shared machine.
        "cpu_ms_per_photo": {"mean": round(float(np.mean(cpu_ms)), 1),
                             "p50": round(float(np.percentile(cpu_ms, 50)), 1),
                             "p95": round(float(np.percentile(cpu_ms, 95)), 1)} if ms else None,
        "cpu_cores": os.cpu_count(),
        "startup_ms": round(startup_ms, 1),
        "faces_by_stage": dict(faces_by_stage), "photos_by_stage": dict(photos_by_stage),
        **({"baselines_photos_with_face": dict(baseline),
            "baselines_ms_per_photo": {k: round(float(np.mean(v)), 2)
                                       for k, v in baseline_ms.items() if v}}
           if args.baselines else {}),
        "sheets": sheets, "several_faces": several, "misses": misses}, indent=1))


def photo_record(key: str, dets: list, miss: dict | None) -> dict:
    """One photo's result, exact enough to tell two runs apart: each face's landmark box,
    score, stage, evidence and the SHA-256 of its landmarks' bytes; a miss's reason."""
    import hashlib

    return {"key": key, "miss": miss and miss["detail"], "faces": [
        {"box": [round(float(v), 1) for v in (*d.points[:, :2].min(0), *d.points[:, :2].max(0))],
         "score": round(float(d.score), 4), "stage": d.stage,
         "evidence": [[k, v] for k, v in d.evidence],
         "points_sha256": hashlib.sha256(np.ascontiguousarray(d.points).tobytes()).hexdigest()[:16]}
        for d in dets]}


def baselines(rgb: np.ndarray, ms: dict[str, list[float]]) -> list[str]:
    """Which simpler detectors find a face in ``rgb``: one FaceMesh pass on the photo as it
    is, and ``detect_landmarks`` (padding and detector retries, no plausibility checks, what
    ``generate`` uses). Appends each one's wall time to ``ms``."""
    from maskface.maskgen.landmarks import NoFace, detect_landmarks, largest_mesh

    found = []
    t = time.perf_counter()
    if largest_mesh(rgb, 0.0)[0] is not None:
        found.append("facemesh_once")
    ms["facemesh_once"].append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    try:
        detect_landmarks(rgb)
        found.append("detect_landmarks")
    except NoFace:
        pass
    ms["detect_landmarks"].append(1000 * (time.perf_counter() - t))
    return found


if __name__ == "__main__":
    main()
