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
    with pytest.raises(ShardError):
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
