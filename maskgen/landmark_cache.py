"""A cache of detected landmarks per source image, so re-rendering never detects again.

Detection is the slow, deterministic step; rendering is fast and random. The cache maps a source
key to the digest of the image bytes it was computed from, and either 478 landmarks or the reason
no face was found. An entry whose digest no longer matches the file is ignored (the file
changed). The file is a plain ``.npz`` (numpy), written atomically, readable without MediaPipe.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .facepoints import NUM_LANDMARKS

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
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"landmark cache {path} is unreadable ({e}); delete it to "
                             "detect again") from e
        entries = {}
        for i, k in enumerate(keys.tolist()):
            ok = not reasons[i]
            entries[k] = CacheEntry(str(digests[i]), points[i].copy() if ok else None,
                                    str(reasons[i]), str(details[i]), int(faces[i]),
                                    str(found_with[i]))
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
                 points=points)
        os.replace(tmp, path)
