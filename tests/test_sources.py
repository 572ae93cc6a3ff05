"""Sources: folders, lists and CelebA as users download it, with stable keys and splits."""

from __future__ import annotations

import logging
import os
import threading
import zipfile

import pytest

from maskface.maskgen.sources import (
    SourceError,
    celeba_items,
    read_source,
    resolve_source,
    safe_key,
)
from maskface.maskgen.split import celeba_split_by_id, hash_split


def test_folder_is_recursive_and_case_blind(face_folder):
    desc, items = resolve_source(str(face_folder))
    assert desc.startswith("folder:")
    keys = [i.key for i in items]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert "sub__deeper__small" in keys and "sub__mirror" in keys
    assert all("." not in k and "/" not in k for k in keys)
    assert read_source(items[0])[:2] in (b"\xff\xd8", b"BM", b"\x89P", b"RI")


def test_list_file(tmp_path, face_folder):
    lst = tmp_path / "faces.txt"
    lst.write_text(f"# my faces\n{face_folder / 'astronaut.jpg'}\n{face_folder / 'gray.png'}\n")
    _, items = resolve_source(str(lst))
    assert len(items) == 2


def test_colliding_names_get_distinct_keys(tmp_path, face_folder):
    (tmp_path / "a.jpg").write_bytes((face_folder / "astronaut.jpg").read_bytes())
    (tmp_path / "a.png").write_bytes((face_folder / "gray.png").read_bytes())
    _, items = resolve_source(str(tmp_path))
    assert len({i.key for i in items}) == 2


def test_splits_are_stable_and_follow_ratios():
    keys = [f"img{i}" for i in range(4000)]
    splits = [hash_split(k) for k in keys]
    assert splits == [hash_split(k) for k in keys]
    assert 0.77 < splits.count("train") / 4000 < 0.83
    assert hash_split("x", (0, 0, 1)) == "test"
    assert celeba_split_by_id(1) == "train" and celeba_split_by_id(182637) == "val"
    assert celeba_split_by_id(182638) == "test"


def _celeba_files(face_folder):
    data = (face_folder / "astronaut.jpg").read_bytes()
    return {"000001.jpg": data, "162771.jpg": data, "182638.jpg": data}


def test_celeba_folder_zip_and_partition(tmp_path, face_folder):
    files = _celeba_files(face_folder)
    d = tmp_path / "extracted" / "img_align_celeba"
    d.mkdir(parents=True)
    for n, b in files.items():
        (d / n).write_bytes(b)
    items = celeba_items(tmp_path / "extracted")
    assert [(i.key, i.split) for i in items] == [
        ("000001", "train"), ("162771", "val"), ("182638", "test")]

    z = tmp_path / "zipped"
    z.mkdir()
    with zipfile.ZipFile(z / "img_align_celeba.zip", "w") as zf:
        for n, b in files.items():
            zf.writestr(f"img_align_celeba/{n}", b)
    (z / "list_eval_partition.txt").write_text("000001.jpg 2\n162771.jpg 0\n182638.jpg 1\n")
    items = celeba_items(z)
    assert [i.split for i in items] == ["test", "train", "val"]  # the file wins
    assert items[0].kind == "zip" and read_source(items[0]) == files["000001.jpg"]


def test_missing_celeba_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKFACE_CELEBA", str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="img_align_celeba.zip.*"):
        resolve_source("celeba")


def test_bad_src_argument():
    with pytest.raises(SourceError, match="not 'celeba', 'demo'"):
        resolve_source("/no/such/thing")


def test_safe_key():
    assert safe_key("a b/c.d") == "a_b_c_d"


def test_a_damaged_zip_member_is_an_unreadable_image_not_a_crash(tmp_path, face_folder):
    from maskface.maskgen.sources import SourceItem

    z = tmp_path / "img_align_celeba.zip"
    data = (face_folder / "astronaut.jpg").read_bytes()
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("img_align_celeba/000001.jpg", data)
    raw = bytearray(z.read_bytes())
    i = raw.find(data[200:240])
    raw[i:i + 40] = bytes(40)  # the stored bytes no longer match their CRC
    z.write_bytes(bytes(raw))
    for member in ("img_align_celeba/000001.jpg", "img_align_celeba/missing.jpg"):
        with pytest.raises(OSError):
            read_source(SourceItem("k", "zip", f"{z}::{member}", "train"))


def _one_face(tmp_path, face_folder):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes((face_folder / "astronaut.jpg").read_bytes())
    return src


def test_folder_links_are_followed_once_and_loops_reported(tmp_path, face_folder, caplog):
    src = _one_face(tmp_path, face_folder)
    (src / "sub").mkdir()
    (src / "sub" / "b.png").write_bytes((face_folder / "gray.png").read_bytes())
    os.symlink(".", src / "self")  # a loop
    os.symlink(".", src / "again")  # two loops used to make the listing run forever
    os.symlink("sub", src / "sub-link")  # a second way to sub/
    os.symlink("..", src / "sub" / "up")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.jpg").write_bytes((face_folder / "astronaut.jpg").read_bytes())
    os.symlink(outside, src / "more")  # a folder outside the tree is followed
    with caplog.at_level(logging.WARNING, logger="maskface.sources"):
        _, items = resolve_source(str(src))
    assert sorted(i.key for i in items) == ["a", "more__c", "sub__b"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "4 folder link(s) lead to a folder already listed" in warning
    assert "self -> ." in warning and "sub/up -> ." in warning and "sub-link -> sub" in warning


def _reads_quickly(item):
    """read_source(item) in a thread: (finished within 10 s, the exception it raised)."""
    box = []

    def run():
        try:
            read_source(item)
            box.append(None)
        except OSError as e:
            box.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    return not t.is_alive(), box[0] if box else None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_devices_and_folders_named_like_images_are_unreadable_sources(tmp_path,
                                                                          face_folder):
    src = _one_face(tmp_path, face_folder)
    os.mkfifo(src / "pipe.jpg")
    os.symlink("/dev/zero", src / "zero.png")
    (src / "folder.jpg").mkdir()
    (src / "folder.jpg" / "inside.jpg").write_bytes(b"x")
    _, items = resolve_source(str(src))
    by_key = {i.key: i for i in items}
    assert sorted(by_key) == ["a", "folder", "folder_jpg__inside", "pipe", "zero"]
    for key, what in (("pipe", "a FIFO"), ("zero", "a character device"),
                      ("folder", "a folder")):
        done, err = _reads_quickly(by_key[key])
        assert done, f"reading {key} hangs"
        assert isinstance(err, OSError) and what in str(err) and by_key[key].ref in str(err)
    assert read_source(by_key["folder_jpg__inside"]) == b"x"


def test_a_list_that_is_not_text_is_refused_naming_it(tmp_path):
    lst = tmp_path / "faces.txt"
    lst.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SourceError, match=r"faces\.txt: not a readable text list"):
        resolve_source(str(lst))
