"""``maskface export-folder``: a generate output as a folder per split and identity.

Recognition code reads datasets as ``ROOT/{class}/{image}`` (torchvision's ``ImageFolder`` and
its many copies): ``DEST/{split}/{identity}/{key}.jpg``, where ``key`` is the sample's key
(``{source}_{type}``), is that tree for each split, and ``DEST/{split}.csv`` indexes it. The
images are the shards' bytes, copied: nothing is decoded, re-encoded or rendered again.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .shards import iter_samples
from .sources import safe_key

INDEX_COLUMNS = ("path", "split", "identity", "source", "type", "wear", "image")


class ExportError(ValueError):
    """An output that cannot be exported (unfinished, without identities, DEST in use)."""


@dataclass(frozen=True)
class ShardSample:
    """One sample as the exports need it: its metadata and the member names of its images."""

    split: str
    key: str
    meta: dict
    members: dict[str, bytes]

    @property
    def identity(self) -> str:
        return self.meta["identity"]

    def image(self, kind: str) -> tuple[str, bytes]:
        """``(extension, bytes)`` of the ``masked`` or ``clean`` image, as stored."""
        for ext in ("jpg", "png"):
            data = self.members.get(f"{kind}.{ext}")
            if data is not None:
                return ext, data
        raise ExportError(f"sample {self.key}: no {kind} image")


@dataclass
class ExportSummary:
    """What :func:`export_folder` wrote, per split."""

    dest: str
    images: dict[str, int] = field(default_factory=dict)
    identities: dict[str, int] = field(default_factory=dict)


def read_manifest(out: Path) -> dict:
    """A finished generate output's manifest, or an :class:`ExportError` saying what is wrong."""
    f = out / "manifest.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError as e:
        raise ExportError(f"{out}: no manifest.json (not a finished `maskface generate` "
                          "output: run the same generate command again to finish it)") from e
    except (OSError, ValueError) as e:
        raise ExportError(f"{f}: unreadable ({e})") from e


def output_splits(manifest: dict, split: str | None, out: Path) -> list[str]:
    """The splits to read (``split``, or all of the output's), checked against the manifest;
    the output must have identities."""
    if manifest.get("config", {}).get("identity") is None:
        raise ExportError(f"{out} was generated without identities; run generate with "
                          "--identity folder (or --identity FILE) for a recognition dataset")
    have = [s for s in manifest["splits"] if manifest["splits"][s]["shards"]]
    if split is None:
        return have
    if split not in have:
        raise ExportError(f"{out} has no {split!r} split (it has {', '.join(have)})")
    return [split]


def shard_samples(out: Path, manifest: dict, split: str) -> Iterator[ShardSample]:
    """Every sample of one split of a generate output, shard by shard in the manifest's order
    (each shard checked against its manifest entry as it is read)."""
    for shard in manifest["splits"][split]["shards"]:
        for raw in iter_samples(out / shard["path"]):
            key = raw.pop("__key__")
            meta = json.loads(raw.pop("json"))
            yield ShardSample(split, key, meta, raw)


def identity_folder(identity: str, taken: dict[str, str]) -> str:
    """The folder name of ``identity``: the identity with anything but letters, digits, ``_``
    and ``-`` replaced, so that it is one safe path part. ``taken`` (folder -> identity, filled
    here) catches two identities that would share a folder, before anything is written."""
    name = safe_key(identity)
    other = taken.setdefault(name, identity)
    if other != identity:
        raise ExportError(f"identities {other!r} and {identity!r} would share the folder "
                          f"{name!r}; rename one of them in the identity list")
    return name


def export_folder(out: str | os.PathLike, dest: str | os.PathLike, *, split: str | None = None,
                  with_clean: bool = False) -> ExportSummary:
    """Write ``DEST/{split}/{identity}/{key}.jpg`` for every masked sample of ``out`` (the
    split given, or all), with ``{source}_clean.jpg`` beside each source's samples when
    ``with_clean``, and ``DEST/{split}.csv`` (:data:`INDEX_COLUMNS`) written last. A split
    folder that already holds files is refused, so an export never mixes two outputs."""
    out, dest = Path(out), Path(dest)
    manifest = read_manifest(out)
    splits = output_splits(manifest, split, out)
    for s in splits:
        d = dest / s
        if d.exists() and any(d.iterdir()):
            raise ExportError(f"{d} already holds files; remove it or export to another DEST")
    summary = ExportSummary(str(dest))
    for s in splits:
        rows: list[dict] = []
        taken: dict[str, str] = {}  # folder -> identity
        folder_of: dict[str, str] = {}  # identity -> folder
        cleaned: set[str] = set()  # sources whose clean image is written
        for sample in shard_samples(out, manifest, s):
            folder = folder_of.get(sample.identity)
            if folder is None:
                folder = folder_of[sample.identity] = identity_folder(sample.identity, taken)
                (dest / s / folder).mkdir(parents=True, exist_ok=True)
            ext, data = sample.image("masked")
            rows.append(_write(dest, s, folder, f"{sample.key}.{ext}", data, sample, "masked"))
            source = sample.meta["source"]
            if with_clean and source not in cleaned:
                ext, data = sample.image("clean")
                rows.append(_write(dest, s, folder, f"{source}_clean.{ext}", data, sample,
                                   "clean"))
                cleaned.add(source)
        _write_index(dest / f"{s}.csv", rows)
        summary.images[s] = len(rows)
        summary.identities[s] = len(folder_of)
    return summary


def _write(dest: Path, split: str, folder: str, name: str, data: bytes, sample: ShardSample,
           image: str) -> dict:
    rel = f"{split}/{folder}/{name}"
    (dest / rel).write_bytes(data)
    return {"path": rel, "split": split, "identity": sample.identity,
            "source": sample.meta["source"], "type": sample.meta["type"] if image == "masked"
            else "", "wear": sample.meta.get("wear", "") if image == "masked" else "",
            "image": image}


def _write_index(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
