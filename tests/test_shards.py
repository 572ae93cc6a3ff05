"""Shards: atomic, reproducible writes; readers that refuse unsafe or truncated files."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from maskface.maskgen.encode import encode_png_gray
from maskface.maskgen.shards import ShardError, ShardWriter, iter_samples


def _write(path, n=3):
    with ShardWriter(path) as w:
        for i in range(n):
            w.write(f"k{i}", {"json": b"{}", "mask.png": b"x" * (i + 1)})


def test_round_trip_and_identical_bytes(tmp_path):
    _write(tmp_path / "a.tar")
    _write(tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    samples = list(iter_samples(tmp_path / "a.tar"))
    assert [s["__key__"] for s in samples] == ["k0", "k1", "k2"]
    assert samples[2]["mask.png"] == b"xxx"


def test_nothing_appears_until_the_shard_is_whole(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "s.tar") as w:
        w.write("a", {"json": b"{}"})
        raise RuntimeError("killed")
    assert not (tmp_path / "s.tar").exists()


def test_truncated_shard_is_an_error_naming_the_file(tmp_path):
    _write(tmp_path / "s.tar", n=20)
    data = (tmp_path / "s.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(ShardError, match="cut.tar"):
        list(iter_samples(tmp_path / "cut.tar"))


@pytest.mark.parametrize("name", ["../evil.json", "/abs.json", "dir/x.json", "noext"])
def test_unsafe_member_names_are_refused(tmp_path, name):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    (tmp_path / "bad.tar").write_bytes(buf.getvalue())
    with pytest.raises(ShardError, match=r"bad\.tar: unsafe or malformed member name"):
        list(iter_samples(tmp_path / "bad.tar"))


def test_links_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "link.tar").write_bytes(buf.getvalue())
    with pytest.raises(ShardError, match="not a regular file"):
        list(iter_samples(tmp_path / "link.tar"))


def test_png_mask_encoder_is_lossless():
    import cv2

    m = np.zeros((37, 53), np.uint8)
    m[5:30, 10:40] = 255
    m[0, 0] = 7
    out = cv2.imdecode(np.frombuffer(encode_png_gray(m), np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint8 and np.array_equal(out, m)


def test_headers_are_standard_tar(tmp_path):
    """Our hand-written headers read back with tarfile, long names included."""
    long_key = "k" * 120
    with ShardWriter(tmp_path / "s.tar") as w:
        w.write("short", {"json": b'{"a": 1}', "mask.png": bytes(range(256)) * 3})
        w.write(long_key, {"json": b"{}"})
    with tarfile.open(tmp_path / "s.tar") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["short.json", "short.mask.png", f"{long_key}.json"]
        assert all(m.isreg() and m.mode == 0o644 and m.mtime == 0 for m in members)
        assert tar.extractfile(members[1]).read() == bytes(range(256)) * 3
    assert (tmp_path / "s.tar").stat().st_size % (20 * 512) == 0


@pytest.mark.parametrize("n, size, expect", [(10, 4, [4, 3, 3]), (8, 4, [4, 4]), (1, 256, [1]),
                                              (513, 256, [171, 171, 171]), (0, 4, [])])
def test_a_splits_shards_are_equal_and_cover_it_in_order(n, size, expect):
    from maskface.maskgen.pipeline import plan_tasks
    from maskface.maskgen.sources import SourceItem

    items = [SourceItem(f"k{i:04d}", "file", f"{i}.jpg", "train") for i in range(n)]
    items += [SourceItem("v0", "file", "v.jpg", "val")]
    tasks = plan_tasks(items, size)
    train = [t for t in tasks if t.split == "train"]
    assert [len(t.items) for t in train] == expect
    assert [i for t in train for i in t.items] == items[:n]  # all of them, in order, once
    assert [t.index for t in train] == list(range(len(expect)))
    assert [t.split for t in tasks] == ["train"] * len(expect) + ["val"]


def _flip(path, offset, bit=0x10):
    data = bytearray(path.read_bytes())
    data[offset] ^= bit
    path.write_bytes(bytes(data))


def _header_offsets(path):
    with tarfile.open(path) as tar:
        return [m.offset for m in tar.getmembers()]


@pytest.mark.parametrize("field", [0, 129, 151])  # in the name, the size, the checksum
def test_a_flipped_bit_in_a_member_header_is_an_error_naming_the_file(tmp_path, field):
    """tarfile takes a header that fails its checksum for the end of the archive: the reader
    must not hand back the samples before it as if they were the whole shard."""
    _write(tmp_path / "s.tar", n=7)
    offsets = _header_offsets(tmp_path / "s.tar")
    _flip(tmp_path / "s.tar", offsets[9] + field, 0x01)  # the 4th sample's 2nd member
    with pytest.raises(ShardError, match=r"s\.tar: damaged member header"):
        list(iter_samples(tmp_path / "s.tar"))


def _run_with_manifest(tmp_path, n=5):
    """A shard inside a generate-like output whose manifest lists what the writer wrote."""
    import json

    with ShardWriter(tmp_path / "train" / "shard-000000.tar") as w:
        for i in range(n):
            w.write(f"k{i}", {"json": b"{}", "mask.png": b"x" * (i + 1)})
    entry = {"path": "train/shard-000000.tar", "pairs": w.count, "members": w.members,
             "bytes": w.size, "sha256": w.sha256}
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": "maskface-shards/1", "splits": {"train": {"shards": [entry]}},
         "failures": {}, "render_failures": 0}))
    (tmp_path / "failures.jsonl").write_text("")
    return tmp_path / "train" / "shard-000000.tar", entry


def test_the_writer_reports_what_it_wrote(tmp_path):
    import hashlib

    shard, entry = _run_with_manifest(tmp_path)
    data = shard.read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["bytes"] == len(data) and entry["members"] == 10 and entry["pairs"] == 5
    assert len(list(iter_samples(shard))) == 5


def test_a_listed_shard_is_checked_against_its_manifest(tmp_path):
    shard, entry = _run_with_manifest(tmp_path)
    good = shard.read_bytes()
    data = bytearray(good)
    data[data.find(b"xxx")] ^= 1  # a bit in a member's data: the tar still reads
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"shard-000000\.tar: its sha256 differs"):
        list(iter_samples(shard))
    assert len(list(iter_samples(shard, sha256=False))) == 5  # for readers that opt out
    # A whole, valid shard with fewer samples than listed (a stale or swapped file).
    with ShardWriter(shard) as w:
        for i in range(3):
            w.write(f"k{i}", {"json": b"{}", "mask.png": b"x" * (i + 1)})
    with pytest.raises(ShardError, match=r"shard-000000\.tar: 3 samples where .* lists 5"):
        list(iter_samples(shard))
    shard.write_bytes(good)
    assert len(list(iter_samples(shard))) == 5


def test_verify_names_each_bad_file(tmp_path):
    from maskface.maskgen.shards import verify_output

    shard, _ = _run_with_manifest(tmp_path)
    rep = verify_output(tmp_path)
    assert rep.problems == [] and rep.shards == 1 and rep.pairs == 5
    _flip(shard, _header_offsets(shard)[4] + 124)
    (tmp_path / "train" / "shard-000001.tar").write_bytes(shard.read_bytes())
    rep = verify_output(tmp_path)
    assert len(rep.problems) == 2
    assert "shard-000000.tar: damaged member header" in rep.problems[0]
    assert rep.problems[1].endswith("shard-000001.tar: a shard "
                                    f"{tmp_path / 'manifest.json'} does not list")
    shard.unlink()
    assert "shard-000000.tar: missing" in verify_output(tmp_path).problems[0]
    assert "manifest.json: missing" in verify_output(tmp_path / "train").problems[0]
