"""Hair over the cheeks: how many faces have it found, and what looking for it costs a face
(wall and CPU time); optionally sheets to count the right and wrong ones by eye.

    python bench/hair.py [--src ../shared/data/celeba-wild] [--cache FILE] [--limit N]
                         [--draw DIR]

Landmarks come from --cache (a `maskface generate` landmark cache) or are detected here (not
timed). Faces are aligned as `generate` aligns them (256 px) and `maskgen.hair.find_hair` runs
on each crop. With --draw, DIR gets PNG sheets of every face with hair, eight rows each: the
clean crop, the hair found (tinted green), then a surgical and a cloth mask (seed 1) without
and with the hair kept in front. Prints one JSON object (``hair_faces`` lists the faces).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from faces import add_source_options, faces_with_landmarks

TILE = 160
ROWS_PER_SHEET = 8


def main() -> None:
    import cv2

    from maskface.maskgen.hair import find_hair
    from maskface.maskgen.samples import SampleRules, maskable_face

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_options(ap)
    ap.add_argument("--draw", default=None, help="Write before/after sheets to this folder.")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as in generate's workers
    plain = SampleRules(("surgical", "cloth"), seed=1)
    with_hair = SampleRules(("surgical", "cloth"), seed=1, hair=True)
    wall, cpu, found, rows = [], [], [], []
    faces = 0
    for key, rgb, points in faces_with_landmarks(args):
        faces += 1
        face = maskable_face(rgb, points, 256, key, plain)
        t, c = time.perf_counter(), time.process_time()
        hair = find_hair(face.crop, face.points)
        wall.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.process_time() - c))
        if hair is None:
            continue
        found.append({"key": key, "separation": hair.separation})
        if args.draw:
            rows.append(_row(rgb, points, key, hair, face, plain, with_hair))
    if args.draw:
        out = Path(args.draw)
        out.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(rows), ROWS_PER_SHEET):
            cv2.imwrite(str(out / f"hair-{i // ROWS_PER_SHEET:02d}.png"),
                        np.vstack(rows[i:i + ROWS_PER_SHEET]))
    print(json.dumps({
        "bench": "hair", "src": args.src, "faces": faces, "with_hair": len(found),
        "ms_per_face_median": round(statistics.median(wall), 2) if wall else None,
        "ms_per_face_p95": round(float(np.percentile(wall, 95)), 2) if wall else None,
        "cpu_ms_per_face_median": round(statistics.median(cpu), 2) if cpu else None,
        "hair_faces": found}, indent=1))


def _row(rgb, points, key, hair, face, plain, with_hair) -> np.ndarray:
    """One sheet row: clean | hair tinted | surgical before, after | cloth before, after."""
    import cv2

    from maskface.maskgen.samples import face_samples, maskable_face

    def tile(img: np.ndarray, label: str) -> np.ndarray:
        t = cv2.cvtColor(cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_RGB2BGR)
        cv2.putText(t, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 255, 255), 1)
        return t

    tinted = face.crop.astype(np.float32)
    tinted[..., 1] += (255 - tinted[..., 1]) * 0.6 * hair.cover
    tiles = [tile(face.crop, key), tile(tinted.astype(np.uint8), f"sep {hair.separation}")]
    hairy = maskable_face(rgb, points, 256, key, with_hair)
    for before, after in zip(face_samples(face, plain), face_samples(hairy, with_hair),
                             strict=True):
        for s, label in ((before, "before"), (after, "after")):
            tiles.append(tile(s.rendered.masked if s.rendered is not None else face.crop,
                              f"{s.type} {label}"))
    return np.hstack(tiles)


if __name__ == "__main__":
    main()
