"""What the face benchmarks share: the source options and each face's landmarks, from a
`maskface generate` landmark cache or detected (``bench/placement.py``, ``bench/hands.py``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-wild"


def add_source_options(ap: argparse.ArgumentParser) -> None:
    """--src, --cache and --limit."""
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--cache", default=None, help="A `maskface generate` landmark cache.")
    ap.add_argument("--limit", type=int, default=None)


def faces_with_landmarks(args: argparse.Namespace, timings: dict[str, list[float]] | None = None
                         ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(key, rgb, points)`` for each source image with a face (faces the cache or the
    detector finds none on are skipped). Landmarks detected here (not cached) are timed into
    ``timings["landmarks_ms"]`` and ``["landmarks_cpu_ms"]`` (wall and CPU) when given."""
    from maskface.maskgen.decode import decode_image
    from maskface.maskgen.landmark_cache import LandmarkCache, digest_bytes
    from maskface.maskgen.landmarks import NoFace, detect_landmarks
    from maskface.maskgen.sources import read_source, resolve_source

    if not Path(args.src).exists():
        sys.exit(f"no source at {args.src} (pass --src)")
    _, items = resolve_source(args.src)
    items = items[: args.limit] if args.limit else items
    cache = LandmarkCache.load(args.cache) if args.cache else LandmarkCache()
    for item in items:
        data = read_source(item)
        rgb = decode_image(data)
        entry = cache.get(item.key, digest_bytes(data))
        if entry is not None:
            if entry.points is not None:
                yield item.key, rgb, entry.points
            continue
        t, c = time.perf_counter(), time.process_time()
        try:
            points = detect_landmarks(rgb).points
        except NoFace:
            continue
        if timings is not None:
            timings.setdefault("landmarks_ms", []).append(1000 * (time.perf_counter() - t))
            timings.setdefault("landmarks_cpu_ms", []).append(
                1000 * (time.process_time() - c))
        yield item.key, rgb, points
