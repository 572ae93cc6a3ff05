"""``maskface pairs``: masked-vs-clean verification pairs, the way masked-face verification is
evaluated (LFW's protocol with one image of each pair masked).

A same-identity pair is a masked sample of one photo and the clean image of *another* photo of
that person; a different-identity pair, a masked sample and the clean image of someone else. The
file is LFW's ``pairs.txt`` layout with paths in place of image numbers, paths being those of
:mod:`.folder_export` (``{split}/{identity}/{key}.jpg``, ``{source}_clean.jpg``)::

    1<TAB>N                                          one fold of N pairs of each kind
    IDENTITY<TAB>MASKED<TAB>CLEAN                      N lines: same identity
    IDENTITY1<TAB>MASKED<TAB>IDENTITY2<TAB>CLEAN       N lines: different identities

Pairs are drawn from the seed only, so the same output and seed give the same file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folder_export import ExportError, read_manifest, shard_samples
from .sources import safe_key

# Candidate pairs up to this many are listed and drawn from; beyond it, drawn and redrawn
# until unique (the chance of a repeat is then small at any N that can be asked for).
ENUMERATE_UP_TO = 200_000


@dataclass(frozen=True)
class Photo:
    """One source photo of the split: its person, its clean image, its masked samples."""

    identity: str
    clean: str  # path as export-folder writes it
    masked: tuple[str, ...]


def split_photos(out: Path, split: str) -> list[Photo]:
    """The photos of one split of a generate output with identities, sorted by source key."""
    manifest = read_manifest(out)
    if manifest.get("config", {}).get("identity") is None:
        raise ExportError(f"{out} was generated without identities; run generate with "
                          "--identity folder (or --identity FILE) for verification pairs")
    if not manifest["splits"].get(split, {}).get("shards"):
        raise ExportError(f"{out} has no {split!r} split")
    masked: dict[str, list[str]] = defaultdict(list)
    clean: dict[str, str] = {}
    who: dict[str, str] = {}
    for s in shard_samples(out, manifest, split):
        source = s.meta["source"]
        folder = f"{split}/{safe_key(s.identity)}"
        ext = "png" if "masked.png" in s.members else "jpg"
        masked[source].append(f"{folder}/{s.key}.{ext}")
        clean[source] = f"{folder}/{source}_clean.{ext}"
        who[source] = s.identity
    return [Photo(who[k], clean[k], tuple(masked[k])) for k in sorted(masked)]


def draw_pairs(photos: list[Photo], n: int, seed: int
               ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]:
    """``n`` same-identity pairs ``(identity, masked, clean)`` and ``n`` different-identity
    pairs ``(identity1, masked, identity2, clean)``, each pair at most once, drawn from
    ``seed``. Raises ExportError when the split holds fewer than ``n`` of either kind."""
    if n < 1:
        raise ExportError(f"--n must be at least 1, got {n}")
    by_person: dict[str, list[int]] = defaultdict(list)
    for k, p in enumerate(photos):
        by_person[p.identity].append(k)
    rng = np.random.default_rng(seed)
    # The masked samples of a person's photos, each with the clean image of any other photo
    # of the same person (same), or of anybody else (different).
    same_total = sum(len(photos[k].masked) * (len(ks) - 1) for ks in by_person.values()
                     for k in ks)
    diff_total = sum(len(photos[k].masked) * (len(photos) - len(ks))
                     for ks in by_person.values() for k in ks)
    if same_total < n or diff_total < n:
        raise ExportError(
            f"the split has {len(photos)} photos of {len(by_person)} people: at most "
            f"{same_total} same-identity and {diff_total} different-identity pairs; ask for "
            f"--n {min(same_total, diff_total)} or fewer")
    masked = [(k, m) for k, p in enumerate(photos) for m in p.masked]

    def same(i: int, j: int) -> bool:
        return photos[i].identity == photos[j].identity

    def pick(want_same: bool) -> list[tuple[int, str, int]]:
        total = same_total if want_same else diff_total
        if total <= ENUMERATE_UP_TO:
            cands = [(k, m, j) for k, m in masked
                     for j in (by_person[photos[k].identity] if want_same else range(len(photos)))
                     if j != k and same(k, j) == want_same]
            return [cands[i] for i in sorted(rng.choice(len(cands), n, replace=False))]
        chosen: set[tuple[int, str, int]] = set()
        while len(chosen) < n:
            k, m = masked[int(rng.integers(len(masked)))]
            if want_same:
                people = by_person[photos[k].identity]
                j = people[int(rng.integers(len(people)))]
            else:
                j = int(rng.integers(len(photos)))
            if j != k and same(k, j) == want_same:
                chosen.add((k, m, j))
        return sorted(chosen)

    # People are named by their folders (as LFW's pairs name its folders).
    same_pairs = [(safe_key(photos[k].identity), m, photos[j].clean) for k, m, j in pick(True)]
    diff_pairs = [(safe_key(photos[k].identity), m, safe_key(photos[j].identity),
                   photos[j].clean) for k, m, j in pick(False)]
    return same_pairs, diff_pairs


def pairs_text(same: list[tuple[str, ...]], diff: list[tuple[str, ...]]) -> str:
    """The pairs file's text (see the module's docstring)."""
    lines = [f"1\t{len(same)}"] + ["\t".join(p) for p in same] + ["\t".join(p) for p in diff]
    return "\n".join(lines) + "\n"


def write_pairs(out: str | os.PathLike, path: str | os.PathLike, *, n: int, split: str = "test",
                seed: int = 0) -> dict:
    """Draw ``n`` pairs of each kind from ``split`` of the generate output ``out`` and write
    them to ``path``; returns what was written."""
    photos = split_photos(Path(out), split)
    same, diff = draw_pairs(photos, n, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(pairs_text(same, diff), encoding="utf-8")
    os.replace(tmp, path)
    return {"pairs_file": str(path), "split": split, "same": len(same), "different": len(diff),
            "photos": len(photos), "identities": len({p.identity for p in photos})}
