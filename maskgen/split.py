"""Which split (train / val / test) a source image belongs to.

CelebA has an official partition; everything else is split by a hash of the source key, so the
split of an image never depends on which other images are in the folder or on the run's seed.
"""

from __future__ import annotations

import hashlib
import math

SPLITS = ("train", "val", "test")

# CelebA's list_eval_partition.txt, as ranges of image ids: it is exactly these three blocks.
CELEBA_PARTITION = ((1, 162770, "train"), (162771, 182637, "val"), (182638, 202599, "test"))
_PARTITION_CODES = {"0": "train", "1": "val", "2": "test"}


def hash_split(key: str, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """A deterministic split for ``key`` drawn with the given train/val/test ``ratios``."""
    total = sum(ratios)
    if total <= 0 or min(ratios) < 0:
        raise ValueError(f"split ratios must be non-negative and not all zero, got {ratios}")
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    x = h / 2**64 * total
    acc = 0.0
    for name, r in zip(SPLITS, ratios, strict=True):
        acc += r
        if x < acc:
            return name
    return SPLITS[-1]


def celeba_split_by_id(image_id: int) -> str | None:
    """The official CelebA split of a numeric image id, or None outside CelebA's range."""
    for lo, hi, name in CELEBA_PARTITION:
        if lo <= image_id <= hi:
            return name
    return None


def parse_partition_file(text: str) -> dict[str, str]:
    """Parse ``list_eval_partition.txt`` (``000001.jpg 0`` per line) to {file name: split}."""
    out: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in _PARTITION_CODES:
            raise ValueError(f"list_eval_partition.txt line {line_no}: expected 'NAME 0|1|2', "
                             f"got {line!r}")
        out[parts[0]] = _PARTITION_CODES[parts[1]]
    return out


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"`` into a ratio triple."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise ValueError(f"--split-ratios needs three numbers train,val,test; got {text!r}")
    if not all(math.isfinite(p) and p >= 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(f"--split-ratios: three numbers >= 0, not all 0; got {text!r}")
    return parts[0], parts[1], parts[2]
