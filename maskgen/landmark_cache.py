"""A cache of detected landmarks per source image, so re-rendering never detects again.

Detection is the slow, deterministic step; rendering is fast and random. The cache maps a source
key to the digest of the image bytes it was computed from, and either 478 landmarks (with the
hands found near the face) or the reason no face was found. An entry whose digest no longer
matches the file is ignored (the file changed). The file is a plain ``.npz`` (numpy), written
atomically, readable without MediaPipe.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .facepoints import NUM_LANDMARKS

HAND_POINTS = 21  # MediaPipe Hands' landmarks per hand

FORMAT_VERSION = 1


def digest_bytes(data: bytes) -> str:
    """The content digest that ties a cache entry to the exact bytes it was computed from."""
    return hashlib.blake2b(data, digest_size=12).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """Landmarks (``(478, 3)`` float32, in decoded-image pixels) or a failure ``reason``;
    ``found_with`` names what found them (see ``landmarks.runtime_description``; "" in caches
    written before it was recorded)."""

    digest: str
    points: np.ndarray | None
    reason: str = ""
    detail: str = ""
    faces_found: int = 0
    found_with: str = ""
    # The hands found near the face: (21 points in decoded-image pixels, score) each; None
    # when they were not looked for (caches written before hands were, or --no-hands).
    hands: tuple[tuple[np.ndarray, float], ...] | None = None


class LandmarkCache:
    """A dict-like store of :class:`CacheEntry` by source key, loaded from and saved to ``.npz``."""

    def __init__(self, entries: dict[str, CacheEntry] | None = None) -> None:
        self.entries: dict[str, CacheEntry] = dict(entries or {})

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str, digest: str) -> CacheEntry | None:
        """The entry for ``key`` if it was computed from bytes with this ``digest``."""
        e = self.entries.get(key)
        return e if e is not None and e.digest == digest else None

    def update(self, entries: dict[str, CacheEntry]) -> None:
        self.entries.update(entries)

    def subset(self, keys: list[str]) -> dict[str, CacheEntry]:
        return {k: self.entries[k] for k in keys if k in self.entries}

    @classmethod
    def load(cls, path: str | os.PathLike) -> LandmarkCache:
        """Load a cache file; a missing file is an empty cache, a damaged one an error."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != FORMAT_VERSION:
                    raise ValueError(f"format version {int(z['version'])}, expected "
                                     f"{FORMAT_VERSION}")
                keys, digests, reasons = z["keys"], z["digests"], z["reasons"]
                details, faces, points = z["details"], z["faces"], z["points"]
                # Added later, without a new format version: older files simply lack it.
                found_with = z["found_with"] if "found_with" in z.files else [""] * len(keys)
                hands = _hands_of(z, len(keys))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"landmark cache {path} is unreadable ({e}); delete it to "
                             "detect again") from e
        entries = {}
        for i, k in enumerate(keys.tolist()):
            ok = not reasons[i]
            entries[k] = CacheEntry(str(digests[i]), points[i].copy() if ok else None,
                                    str(reasons[i]), str(details[i]), int(faces[i]),
                                    str(found_with[i]), hands[i])
        return cls(entries)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename), keys sorted so bytes are stable."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.entries)
        n = len(keys)
        points = np.zeros((n, NUM_LANDMARKS, 3), np.float32)
        for i, k in enumerate(keys):
            if self.entries[k].points is not None:
                points[i] = self.entries[k].points
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, version=np.int64(FORMAT_VERSION),
                 keys=np.array(keys, dtype=str).reshape(n),
                 digests=np.array([self.entries[k].digest for k in keys], dtype=str).reshape(n),
                 reasons=np.array([self.entries[k].reason for k in keys], dtype=str).reshape(n),
                 details=np.array([self.entries[k].detail for k in keys], dtype=str).reshape(n),
                 faces=np.array([self.entries[k].faces_found for k in keys], np.int64),
                 found_with=np.array([self.entries[k].found_with for k in keys],
                                     dtype=str).reshape(n),
                 points=points, **_hand_arrays([self.entries[k].hands for k in keys]))
        os.replace(tmp, path)


def _hand_arrays(hands: list[tuple[tuple[np.ndarray, float], ...] | None]) -> dict:
    """The hands of the entries in order as three arrays: ``hand_counts`` (-1: not looked for),
    then every hand's points and score."""
    counts = np.array([-1 if h is None else len(h) for h in hands], np.int64)
    found = [x for h in hands if h for x in h]
    pts = np.zeros((len(found), HAND_POINTS, 3), np.float32)
    for i, (p, _) in enumerate(found):
        pts[i] = p
    return {"hand_counts": counts, "hand_points": pts,
            "hand_scores": np.array([s for _, s in found], np.float32)}


def _hands_of(z, n: int) -> list[tuple[tuple[np.ndarray, float], ...] | None]:
    """The entries' hands from a loaded file (added later, without a new format version: an
    older file has none looked for)."""
    if "hand_counts" not in z.files:
        return [None] * n
    counts, pts, scores = z["hand_counts"], z["hand_points"], z["hand_scores"]
    if len(counts) != n or counts.sum(where=counts > 0) != len(pts) or len(pts) != len(scores):
        raise ValueError("hand arrays do not match the entries")
    out: list[tuple[tuple[np.ndarray, float], ...] | None] = []
    at = 0
    for c in counts.tolist():
        if c < 0:
            out.append(None)
            continue
        out.append(tuple((pts[j].copy(), float(scores[j])) for j in range(at, at + c)))
        at += c
    return out
