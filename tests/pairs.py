"""Training pairs for the trainer's tests, written without MediaPipe (GPU machines lack it).

Crops of the real pictures scikit-image ships, each with a "mask" drawn over its lower middle:
a filled polygon in a flat colour with a little shading, so the trainer has a real task (put
the picture back where the polygon is) and the shards have the generator's exact layout
(``{key}.masked.jpg``, ``{key}.clean.jpg``, ``{key}.mask.png``, ``{key}.json``, a manifest).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from maskface.maskgen.shards import ShardWriter

PICTURES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "cat")


def _pictures() -> list[np.ndarray]:
    from skimage import data

    return [getattr(data, name)() for name in PICTURES]


def make_pair(picture: np.ndarray, size: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masked, clean, mask) uint8 RGB / RGB / 0-255 from a random crop of ``picture``."""
    h, w = picture.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w)))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    clean = cv2.resize(np.ascontiguousarray(picture[y:y + side, x:x + side]), (size, size),
                       interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        clean = np.ascontiguousarray(clean[:, ::-1])
    c = size / 2
    pts = np.array([[c + rng.uniform(-0.35, -0.2) * size, rng.uniform(0.4, 0.5) * size],
                    [c + rng.uniform(0.2, 0.35) * size, rng.uniform(0.4, 0.5) * size],
                    [c + rng.uniform(0.25, 0.4) * size, rng.uniform(0.7, 0.8) * size],
                    [c, rng.uniform(0.85, 0.95) * size],
                    [c - rng.uniform(0.25, 0.4) * size, rng.uniform(0.7, 0.8) * size]])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    colour = rng.integers(30, 230, 3).astype(np.float32)
    shade = np.linspace(0.85, 1.1, size, dtype=np.float32)[:, None, None]
    paint = np.clip(colour * shade * np.ones((size, size, 3), np.float32), 0, 255)
    masked = np.where(mask[..., None] > 0, paint.astype(np.uint8), clean)
    return masked, clean, mask


def _encode(ext: str, img: np.ndarray) -> bytes:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, img, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [])
    assert ok
    return buf.tobytes()


def write_pairs(root: Path, size: int = 64, shards: dict[str, int] | None = None,
                per_shard: int = 8, seed: int = 0) -> Path:
    """A dataset under ``root`` as ``maskface generate`` writes it: ``shards`` maps each split
    to its number of shards (default train 3, val 1, test 1), ``per_shard`` pairs each."""
    shards = shards or {"train": 3, "val": 1, "test": 1}
    rng = np.random.default_rng(seed)
    pictures = _pictures()
    types = ("surgical", "cloth", "kn95")
    manifest: dict = {"config": {"size": size, "seed": seed}, "splits": {}}
    n = 0
    for split, count in shards.items():
        entries = []
        for s in range(count):
            rel = f"{split}/shard-{s:06d}.tar"
            with ShardWriter(root / rel) as w:
                for _ in range(per_shard):
                    masked, clean, mask = make_pair(pictures[n % len(pictures)], size, rng)
                    meta = {"source": f"{PICTURES[n % len(pictures)]}-{n}", "type":
                            types[n % len(types)], "wear": "proper"}
                    w.write(f"p{n:05d}", {"masked.jpg": _encode(".jpg", masked),
                                          "clean.jpg": _encode(".jpg", clean),
                                          "mask.png": _encode(".png", mask),
                                          "json": json.dumps(meta).encode()})
                    n += 1
            entries.append({"path": rel, "pairs": per_shard})
        manifest["splits"][split] = {"pairs": per_shard * count, "shards": entries}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root
