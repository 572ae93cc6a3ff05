"""Face finding on real photos: how many faces `detect_faces` finds, how fast, and by which stage.

    python bench/detect.py [--src ../shared/data/real-masked-dev] [--limit N] [--draw DIR]
                           [--baselines]

Runs `maskgen.find_faces.detect_faces` over every image of a folder (one process, models loaded
before timing starts) and prints one JSON object: photos, photos with a face, found rate, faces
in all, milliseconds per photo (wall and CPU; mean, p50, p95), the stage that found each face,
and each miss with its reason. `--draw DIR` also writes each photo with its landmarks, eye and
mouth anchors (red: image-left eye, blue: image-right eye, yellow: mouth) as PNG, to look at.
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


def draw(rgb: np.ndarray, dets: list) -> np.ndarray:
    """The photo with each face's landmarks (green), eye and mouth anchors, stage and score."""
    import cv2

    from maskface.maskgen.facepoints import anchor_points

    out = rgb.copy()
    dot = max(1, round(max(rgb.shape[:2]) / 400))
    for d in dets:
        for x, y in d.points[:, :2]:
            cv2.circle(out, (int(x), int(y)), 0, (0, 255, 0), -1)
        for (x, y), colour in zip(anchor_points(d.points),
                                  [(255, 0, 0), (0, 0, 255), (255, 255, 0)], strict=True):
            cv2.circle(out, (int(x), int(y)), 2 * dot + 1, colour, -1)
        x0, y0 = d.points[:, :2].min(0)
        cv2.putText(out, f"{d.stage} {d.score:.2f}", (max(0, int(x0)), max(10, int(y0) - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35 * dot, (255, 0, 255), 1)
    return out


def main() -> None:
    from maskface.maskgen.decode import BadImage, decode_image
    from maskface.maskgen.find_faces import detect_faces
    from maskface.maskgen.landmarks import NoFace
    from maskface.maskgen.sources import read_source, resolve_source

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--max-faces", type=int, default=None)
    ap.add_argument("--draw", default=None, help="write annotated PNGs into this folder")
    ap.add_argument("--baselines", action="store_true",
                    help="also count (and time) photos where one plain FaceMesh pass, and the "
                         "generator's detect_landmarks (with its retries, unchecked), find a face")
    args = ap.parse_args()
    if not Path(args.src).exists():
        sys.exit(f"no source at {args.src} (pass --src)")
    _, items = resolve_source(args.src)
    items = sorted(items, key=lambda i: i.key)[: args.limit] if args.limit else items
    if not items:
        sys.exit(f"no images in {args.src}")
    if args.draw:
        Path(args.draw).mkdir(parents=True, exist_ok=True)

    # Load the models first (a blank picture runs every stage, a face the checks) so that the
    # timings are the steady state.
    from skimage import data

    t0 = time.perf_counter()
    with contextlib.suppress(NoFace):
        detect_faces(np.full((64, 64, 3), 128, np.uint8))
        detect_faces(data.astronaut())
    startup_ms = 1000 * (time.perf_counter() - t0)

    ms: list[float] = []
    cpu_ms: list[float] = []
    faces_by_stage: Counter = Counter()
    photos_by_stage: Counter = Counter()
    misses, unreadable, with_face, faces_total = [], [], 0, 0
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
            dets = detect_faces(rgb, max_faces=args.max_faces)
        except NoFace as e:
            dets = []
            misses.append({"key": item.key, "size": f"{rgb.shape[1]}x{rgb.shape[0]}",
                           "reason": e.reason, "detail": e.detail})
        ms.append(1000 * (time.perf_counter() - t))
        cpu_ms.append(1000 * (time.process_time() - c))
        if args.baselines:
            baseline.update(baselines(rgb, baseline_ms))
        if dets:
            with_face += 1
            faces_total += len(dets)
            faces_by_stage.update(d.stage for d in dets)
            photos_by_stage[dets[0].stage] += 1
        if args.draw:
            import cv2

            cv2.imwrite(str(Path(args.draw) / f"{Path(item.key).stem}.png"),
                        cv2.cvtColor(draw(rgb, dets), cv2.COLOR_RGB2BGR))

    photos = len(ms)
    print(json.dumps({
        "bench": "detect", "src": args.src, "photos": photos, "unreadable": unreadable,
        "photos_with_face": with_face, "found_rate": round(with_face / max(photos, 1), 4),
        "faces_total": faces_total,
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
        "misses": misses}, indent=1))


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
