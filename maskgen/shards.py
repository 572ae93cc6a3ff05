"""WebDataset-compatible tar shards: write atomically and reproducibly, read defensively.

A shard holds samples as consecutive members sharing a key: ``{key}.masked.jpg``,
``{key}.clean.jpg``, ``{key}.mask.png``, ``{key}.json``. Writing goes to ``NAME.partial`` and is
renamed when complete, so a shard that exists is whole. Member headers carry no time, owner or
host, so the same samples give the same bytes. Readers accept only plain files with flat names,
and a truncated or damaged shard is an error that names the file: the bytes after the last
member must be the end-of-archive zeros (tarfile alone takes a damaged header for the end), and
a shard listed in its run's ``manifest.json`` must hold the samples, members and sha256 listed
there (:func:`verify_output` checks a whole run).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


class ShardError(ValueError):
    """A shard that is truncated, corrupt or holds unsafe members."""


_BLOCK = 512
_RECORD = 20 * _BLOCK  # tar archives are padded to whole records, as tarfile does


def _member_header(name: str, size: int) -> bytes:
    """A ustar header for a plain file: mode 644, owner 0, time 0 (so bytes are reproducible).

    Written by hand because ``tarfile.addfile`` costs ~60 us a member, a fifth of the time it
    takes to render a mask. Names that do not fit ustar go through tarfile's PAX headers.
    """
    raw = name.encode("utf-8")
    if len(raw) > 100 or not name.isascii():
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    head = bytearray(_BLOCK)
    head[0:len(raw)] = raw
    head[100:108] = b"0000644\0"
    head[108:116] = b"0000000\0"
    head[116:124] = b"0000000\0"
    head[124:136] = b"%011o\0" % size
    head[136:148] = b"00000000000\0"
    head[148:156] = b" " * 8
    head[156] = ord("0")
    head[257:265] = b"ustar\x0000"
    head[329:337] = b"0000000\0"
    head[337:345] = b"0000000\0"
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


class ShardWriter:
    """Write one shard; use as a context manager. Nothing appears under ``path`` until the
    whole shard is written (an exception leaves only the ``.partial`` file, later redone)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close/abort)
        self._size = 0
        self._hash = hashlib.sha256()
        self.count = 0  # samples
        self.members = 0
        self.size = 0  # bytes of the whole shard, once closed
        self.sha256 = ""  # of the whole shard, once closed

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample: ``members`` maps extension (``masked.jpg``...) to bytes."""
        if not key or "." in key or "/" in key:
            raise ValueError(f"invalid sample key {key!r}")
        parts = []
        for ext, data in members.items():
            parts += [_member_header(f"{key}.{ext}", len(data)), data,
                      bytes(-len(data) % _BLOCK)]
        blob = b"".join(parts)
        self._file.write(blob)
        self._hash.update(blob)
        self._size += len(blob)
        self.count += 1
        self.members += len(members)

    def close(self) -> None:
        end = 2 * _BLOCK  # the end-of-archive marker: two zero blocks
        end += -(self._size + end) % _RECORD
        self._file.write(bytes(end))
        self._hash.update(bytes(end))
        self.size = self._size + end
        self.sha256 = self._hash.hexdigest()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._file.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _split_name(path: Path, name: str) -> tuple[str, str]:
    if "/" in name or "\\" in name or name.startswith(".") or "." not in name:
        raise ShardError(f"{path}: unsafe or malformed member name {name!r}")
    key, ext = name.split(".", 1)
    return key, ext


def _check_complete(path: Path) -> None:
    """A whole tar ends with two zero blocks; a shard cut at a member boundary would otherwise
    read as a shorter, valid one."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - 1024))
            tail = f.read(1024)
    except OSError as e:
        raise ShardError(f"{path}: unreadable ({e})") from e
    if size < 1024 or size % 512 or tail.count(0) != 1024:
        raise ShardError(f"{path}: truncated shard (no end-of-archive marker)")


class _HashedReader:
    """A file read through ``tarfile`` while the sha256 of every byte from the start is taken:
    forward seeks (tarfile skips the padding after a member's data) read the bytes skipped."""

    def __init__(self, f, hashing: bool = True) -> None:
        self.f = f
        self.pos = 0
        self.hashed = 0  # bytes [0, hashed) are in the hash
        self.hash = hashlib.sha256() if hashing else None

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if self.hash is None:
            pass
        elif self.pos <= self.hashed < self.pos + len(data):
            self.hash.update(memoryview(data)[self.hashed - self.pos:])
            self.hashed = self.pos + len(data)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self.pos + offset}.get(whence)
        if target is None:  # from the end: only tarfile's probes use it; no hashing needed
            self.pos = self.f.seek(offset, whence)
            return self.pos
        if self.hash is not None and target > self.hashed:
            self.f.seek(self.hashed)
            self.pos = self.hashed
            while self.pos < target and self.read(min(1 << 20, target - self.pos)):
                pass
        self.pos = self.f.seek(target)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def rest_is_zeros(self, start: int) -> bool:
        """Hash to the end of the file and tell whether every byte from ``start`` on is 0."""
        self.seek(start)
        zeros = True
        while chunk := self.read(1 << 20):
            zeros = zeros and not chunk.strip(b"\0")
        return zeros


@lru_cache(maxsize=8)
def _manifest_shards(manifest: str, mtime_ns: int, size: int) -> dict[str, dict]:
    """A run's shards as its manifest lists them, by path relative to the run (cached while
    the file is unchanged)."""
    try:
        m = json.loads(Path(manifest).read_text())
        return {s["path"]: s for sp in m["splits"].values() for s in sp["shards"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # not a generate manifest: nothing to check against


def manifest_entry(path: str | os.PathLike) -> tuple[Path, dict] | None:
    """``(manifest path, entry)`` for a shard inside a ``maskface generate`` output whose
    ``manifest.json`` lists it (``SPLIT/shard-NNNNNN.tar``), else None."""
    path = Path(path).absolute()
    manifest = path.parent.parent / "manifest.json"
    try:
        st = manifest.stat()
    except OSError:
        return None
    entry = _manifest_shards(str(manifest), st.st_mtime_ns, st.st_size).get(
        f"{path.parent.name}/{path.name}")
    return (manifest, entry) if entry is not None else None


def iter_samples(path: str | os.PathLike, *, sha256: bool = True) -> Iterator[dict]:
    """Yield ``{"__key__": key, ext: bytes, ...}`` for each sample of a shard, in order.

    Raises :class:`ShardError` naming the file for a truncated or damaged shard: unsafe
    members, a damaged member header, or (for a shard its run's manifest lists) other counts
    or another sha256 than the manifest's; these last are known only once the shard is read
    to its end, so the error comes after its samples. ``sha256=False`` skips the hash (about
    a third of the reading time on a 2-core machine; counts and structure are still checked)
    for a reader that reads the same shards again and again."""
    path = Path(path)
    _check_complete(path)
    listed = manifest_entry(path)
    current: dict | None = None
    samples = members = 0
    try:
        with open(path, "rb") as raw:
            reader = _HashedReader(raw, hashing=sha256)
            with tarfile.open(fileobj=reader, mode="r:") as tar:
                for info in tar:
                    if not info.isreg():
                        raise ShardError(f"{path}: member {info.name!r} is not a regular file")
                    key, ext = _split_name(path, info.name)
                    f = tar.extractfile(info)
                    data = f.read() if f is not None else b""
                    if len(data) != info.size:
                        raise ShardError(f"{path}: member {info.name!r} is truncated")
                    members += 1
                    if current is not None and current["__key__"] != key:
                        samples += 1
                        yield current
                        current = None
                    if current is None:
                        current = {"__key__": key}
                    if ext in current:
                        raise ShardError(f"{path}: duplicate member {info.name!r}")
                    current[ext] = data
                # tarfile stops at the first block that is not a valid header, as if it were
                # the end: in a whole shard, only zeros follow.
                end = tar.offset
                if not reader.rest_is_zeros(end):
                    raise ShardError(f"{path}: damaged member header at byte {end} (after "
                                     f"{members} members); the shard is corrupt")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ShardError(f"{path}: truncated or corrupt shard ({e})") from e
    if current is not None:
        samples += 1
        yield current
    if listed is not None:
        _check_listed(path, listed, samples, members,
                      reader.hash.hexdigest() if reader.hash is not None else None)


def _check_listed(path: Path, listed: tuple[Path, dict], samples: int, members: int,
                  sha256: str | None) -> None:
    manifest, entry = listed
    if samples != entry.get("pairs", samples):
        raise ShardError(f"{path}: {samples} samples where {manifest} lists {entry['pairs']}; "
                         "the shard is short or damaged")
    if members != entry.get("members", members):
        raise ShardError(f"{path}: {members} members where {manifest} lists "
                         f"{entry['members']}; the shard is damaged")
    if sha256 is not None and sha256 != entry.get("sha256", sha256):
        raise ShardError(f"{path}: its sha256 differs from the one {manifest} lists; the shard "
                         "is damaged or was changed")


@dataclass
class VerifyReport:
    """What :func:`verify_output` found: shards and pairs checked, and one line per problem."""

    shards: int = 0
    pairs: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verify_output(out: str | os.PathLike) -> VerifyReport:
    """Check a ``maskface generate`` output against its ``manifest.json``: every listed shard
    is there, reads whole, and has the listed samples, members, size and sha256; no shard is
    there that the manifest does not list; ``failures.jsonl`` has the listed records."""
    out = Path(out)
    rep = VerifyReport()
    manifest = out / "manifest.json"
    if not manifest.is_file():
        rep.problems.append(f"{manifest}: missing (an unfinished run: run the same generate "
                            "command again to finish it; or not a generate output)")
        return rep
    try:
        m = json.loads(manifest.read_text())
        listed = [s for sp in m["splits"].values() for s in sp["shards"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        rep.problems.append(f"{manifest}: unreadable ({e})")
        return rep
    if any("sha256" not in s for s in listed):
        rep.notes.append(f"{manifest} lists no sha256 for some shards (made by an older "
                         "maskface): those are checked for structure and counts only")
    for s in listed:
        p = out / s["path"]
        rep.shards += 1
        if not p.is_file():
            rep.problems.append(f"{p}: missing")
            continue
        if "bytes" in s and p.stat().st_size != s["bytes"]:
            rep.problems.append(f"{p}: {p.stat().st_size} bytes where {manifest} lists "
                                f"{s['bytes']}; the shard is short or damaged")
            continue
        try:
            n = sum(1 for _ in iter_samples(p))
        except ShardError as e:
            rep.problems.append(str(e))
            continue
        rep.pairs += n
    names = {s["path"] for s in listed}
    for split in m["splits"]:
        for p in sorted((out / split).glob("*.tar")) if (out / split).is_dir() else []:
            if f"{split}/{p.name}" not in names:
                rep.problems.append(f"{p}: a shard {manifest} does not list")
    failures = out / "failures.jsonl"
    want = sum(m.get("failures", {}).values()) + m.get("render_failures", 0)
    try:
        have = sum(1 for line in failures.read_text().splitlines() if line.strip())
    except OSError as e:
        rep.problems.append(f"{failures}: unreadable ({e})")
    else:
        if have != want:
            rep.problems.append(f"{failures}: {have} records where {manifest} counts {want}")
    return rep


def decode_sample(sample: dict) -> dict:
    """Decode one raw sample's images (RGB uint8) and metadata; used by readers and tests."""
    import cv2
    import numpy as np

    def img(data: bytes, flags: int) -> np.ndarray:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        if a is None:
            raise ShardError(f"sample {sample['__key__']}: undecodable image")
        return a

    out = {"__key__": sample["__key__"], "json": json.loads(sample["json"])}
    for ext in ("masked.jpg", "clean.jpg", "masked.png", "clean.png"):
        if ext in sample:
            out[ext.split(".")[0]] = cv2.cvtColor(img(sample[ext], cv2.IMREAD_COLOR),
                                                  cv2.COLOR_BGR2RGB)
    out["mask"] = img(sample["mask.png"], cv2.IMREAD_GRAYSCALE)
    return out
