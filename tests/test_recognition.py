"""Recognition datasets: identities from sources, identity-disjoint splits, arcface crops, the
folder export and verification pairs."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, needs_shared

from maskface.cli import main
from maskface.maskgen.crops import (
    ARCFACE_112,
    arcface_template,
    crop_matrix,
    parse_crop,
    template_residual,
)
from maskface.maskgen.identities import IdentityError, folder_identity, parse_identity_file
from maskface.maskgen.shards import decode_sample, iter_samples
from maskface.maskgen.sources import SourceError, assign_identities, resolve_source

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def person_tree(root: Path, people: int, photos: int) -> Path:
    """A folder per person with empty 'photos' (listing and splitting never read them)."""
    for p in range(people):
        d = root / f"person {p:03d}"
        d.mkdir(parents=True)
        for k in range(photos):
            (d / f"{k:04d}.jpg").write_bytes(b"")
    return root


# --- identities and splits ------------------------------------------------------------------

def test_identity_file_lines():
    table = parse_identity_file("# CelebA's format\n000001.jpg 2880\n\nsub dir/a b.png  17\n"
                                "x.jpg\tn000002\nmy photos/c d.jpg\tn000003\n")
    assert table == {"000001.jpg": "2880", "sub dir/a b.png": "17", "x.jpg": "n000002",
                     "my photos/c d.jpg": "n000003"}
    with pytest.raises(IdentityError, match="line 2"):
        parse_identity_file("a.jpg 1\nlonely\n")
    assert folder_identity("Aaron_Eckhart/0001.jpg") == "Aaron_Eckhart"
    assert folder_identity("lfw/Aaron_Eckhart/0001.jpg") == "Aaron_Eckhart"
    assert folder_identity("0001.jpg") is None


def test_folder_identities_never_cross_splits(tmp_path):
    root = person_tree(tmp_path / "tree", 300, 4)
    (root / "stray.jpg").write_bytes(b"")  # no folder: no identity
    src = str(root)
    _, items = resolve_source(src)
    by_key = {i.key: i.split for i in items}
    mode, items = assign_identities(src, items, "folder")
    assert mode == "folder"
    splits = defaultdict(set)
    for i in items:
        if i.identity is not None:
            splits[i.identity].add(i.split)
    assert len(splits) == 300 and all(len(s) == 1 for s in splits.values())
    count = {s: sum(1 for v in splits.values() if v == {s}) for s in ("train", "val", "test")}
    assert 200 <= count["train"] <= 280 and count["val"] >= 15 and count["test"] >= 15
    # Per image, the old hash split put most people in two or three splits.
    per_image = defaultdict(set)
    for i in items:
        if i.identity is not None:
            per_image[i.identity].add(by_key[i.key])
    assert sum(len(s) > 1 for s in per_image.values()) > 100
    (stray,) = [i for i in items if i.identity is None]
    assert stray.key == "stray" and stray.split == by_key["stray"]
    assert assign_identities(src, items, "auto") == ("none", items)


def test_identity_file_for_a_folder_by_path_then_name(tmp_path):
    root = person_tree(tmp_path / "tree", 2, 2)
    lst = tmp_path / "ids.txt"
    lst.write_text("person 000/0000.jpg alice\nperson 000/0001.jpg alice\n0000.jpg bob\n")
    mode, items = assign_identities(str(root), resolve_source(str(root))[1], str(lst))
    assert mode == f"file:{lst}"
    # person 001/0000.jpg is found by its name; person 001/0001.jpg is in no line.
    assert [i.identity for i in items] == ["alice", "alice", "bob", None]
    with pytest.raises(SourceError, match="'auto', 'none', 'folder' or an existing file"):
        assign_identities(str(root), items, str(tmp_path / "missing.txt"))
    with pytest.raises(SourceError, match="demo source has no identities"):
        assign_identities("demo", resolve_source("demo")[1], "folder")


def test_a_list_of_paths_takes_identities_from_their_folders(tmp_path):
    root = person_tree(tmp_path / "tree", 3, 2)
    lst = tmp_path / "faces.txt"
    lst.write_text("tree/person 002/0001.jpg\n" + str(root / "person 000" / "0000.jpg") + "\n")
    mode, items = assign_identities(str(lst), resolve_source(str(lst))[1], "folder")
    assert mode == "folder"
    assert sorted(i.identity for i in items) == ["person 000", "person 002"]


def test_celeba_identities_beside_the_partition_keep_the_official_split(tmp_path):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = ["000001.jpg", "000002.jpg", "162771.jpg", "182638.jpg"]
    for n in names:
        (root / "img_align_celeba" / n).write_bytes(b"")
    (root / "Eval").mkdir()
    (root / "Eval" / "list_eval_partition.txt").write_text(
        "000001.jpg 0\n000002.jpg 0\n162771.jpg 1\n182638.jpg 2\n")
    _, items = resolve_source("celeba", celeba_root=str(root))
    # Without identity_CelebA.txt beside the partition file: no identities, as before.
    assert assign_identities("celeba", items, "auto", celeba_root=str(root)) == ("none", items)
    (root / "Eval" / "identity_CelebA.txt").write_text(
        "000001.jpg 2880\n000002.jpg 2937\n162771.jpg 8692\n182638.jpg 2880\n")
    mode, got = assign_identities("celeba", items, "auto", celeba_root=str(root))
    assert mode == f"file:{root / 'Eval' / 'identity_CelebA.txt'}"
    assert [(i.identity, i.split) for i in got] == [
        ("2880", "train"), ("2937", "train"), ("8692", "val"), ("2880", "test")]
    with pytest.raises(SourceError, match="flat folder"):
        assign_identities("celeba", items, "folder", celeba_root=str(root))


# --- the recognition template -----------------------------------------------------------------

def test_arcface_template_is_insightfaces():
    # insightface's arcface_dst (python-package/insightface/utils/face_align.py), and its rule
    # for other sizes: multiples of 112 scale; 128 and its multiples shift x by 8 px first.
    assert np.allclose(arcface_template(112), [[38.2946, 51.6963], [73.5318, 51.5014],
                                               [56.0252, 71.7366], [41.5493, 92.3655],
                                               [70.7299, 92.2041]])
    assert np.allclose(arcface_template(224), 2 * ARCFACE_112)
    assert np.allclose(arcface_template(128), ARCFACE_112 + [8, 0])
    assert np.allclose(arcface_template(256), 2 * (ARCFACE_112 + [8, 0]))
    assert parse_crop("default") is None and parse_crop("arcface128") == 128
    for bad in ("arcface100", "arcface", "insight112", "arcface4480"):
        with pytest.raises(ValueError):
            parse_crop(bad)


def _landmarks(rgb: np.ndarray) -> np.ndarray:
    pytest.importorskip("mediapipe")
    from maskface.maskgen.landmarks import detect_landmarks

    return detect_landmarks(rgb).points


def test_five_points_land_on_the_template_of_a_real_face(astronaut):
    pts = _landmarks(astronaut)
    r = template_residual(pts, "arcface112", 256)
    # A similarity cannot fit five points of a real face exactly: hers land 3.3-3.5 px off at
    # the eyes and nose and 6.2-6.5 px at the corners of her broad smile (3.3 px on average
    # over 3,000 CelebA faces, docs/generating.md). A wrong template (mirrored, points out of
    # order, the wrong scale) puts them tens of pixels off.
    assert r.mean() < 6.0 and r.max() < 8.0
    r128 = template_residual(pts, "arcface128", 256)
    # The same fit at another scale (residuals do not see the template's 8 px shift, which
    # test_arcface_template_is_insightfaces checks).
    assert np.allclose(r128, r, atol=1e-4)
    # The default crop is untouched: the same matrix as before arcface crops existed.
    from maskface.maskgen.align import alignment_matrix

    assert np.array_equal(crop_matrix(pts, "default", 256), alignment_matrix(pts, 256))


# --- generate, export-folder, pairs on a folder-per-identity tree of real faces ---------------

@pytest.fixture(scope="module")
def people_folder(tmp_path_factory) -> Path:
    """The demo's real faces in a folder per person: Eileen Collins (the astronaut) in seven
    variants, the cameraman in two, and twelve LFW crops of unknown people, each its own; one
    picture at the top, in no folder."""
    from maskface.maskgen.demo import demo_bytes, demo_names

    root = tmp_path_factory.mktemp("people")
    for name in demo_names():
        person = ("eileen-collins" if name.startswith("astronaut") else
                  "cameraman" if name.startswith("cameraman") else name)
        (root / person).mkdir(exist_ok=True)
        (root / person / f"{name}.png").write_bytes(demo_bytes(name))
    (root / "stray.png").write_bytes(demo_bytes("astronaut"))
    return root


@pytest.fixture(scope="module")
def arcface_out(tmp_path_factory, people_folder) -> Path:
    pytest.importorskip("mediapipe")
    out = tmp_path_factory.mktemp("arcface") / "out"
    cli("generate", "--no-progress", "--src", str(people_folder), "--out", str(out),
        "--identity", "folder", "--crop", "arcface112", "--types", "surgical,kn95",
        "--per-face", "all", "--split-ratios", "0.5,0.1,0.4", "--jobs", "1")
    return out


def test_generate_keeps_identities_and_splits_by_person(arcface_out):
    m = json.loads((arcface_out / "manifest.json").read_text())
    assert m["config"]["identity"] == "folder" and m["config"]["crop"] == "arcface112"
    assert m["identities_in_several_splits"] == 0
    assert m["failures"].get("no-identity") == 1  # stray.png, recorded with its reason
    fails = [json.loads(x) for x in (arcface_out / "failures.jsonl").read_text().splitlines()]
    assert [f["source"] for f in fails if f["reason"] == "no-identity"] == ["stray"]
    seen = defaultdict(set)
    for split, sp in m["splits"].items():
        people = set()
        for shard in sp["shards"]:
            for raw in iter_samples(arcface_out / shard["path"]):
                s = decode_sample(raw)
                meta = s["json"]
                assert meta["split"] == split and meta["size"] == 112
                assert meta["crop"] == "arcface112"
                assert s["masked"].shape == s["clean"].shape == (112, 112, 3)
                assert meta["source"].startswith(meta["identity"] + "__")
                # The mask still covers the mouth and nose on the recognition crop's geometry.
                assert meta["placement"]["mouth_covered"] and meta["placement"]["eyes_free"]
                people.add(meta["identity"])
                seen[meta["identity"]].add(split)
        assert sp["identities"] == len(people)
    assert all(len(s) == 1 for s in seen.values())
    assert seen["eileen-collins"] == {"test"} and seen["cameraman"] == {"train"}


def read_image_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """What torchvision's ImageFolder reads from ``root``: the classes (its folders, sorted)
    and (image path, class index) for every image file below each, sorted."""
    classes = sorted(e.name for e in root.iterdir() if e.is_dir())
    samples = [(str(p), k) for k, c in enumerate(classes)
               for p in sorted((root / c).rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
    return classes, samples


def test_export_folder_is_an_image_folder_per_split(arcface_out, tmp_path):
    dest = tmp_path / "dest"
    cli("export-folder", str(arcface_out), str(dest), "--with-clean")
    m = json.loads((arcface_out / "manifest.json").read_text())
    for split, sp in m["splits"].items():
        if not sp["shards"]:
            continue
        classes, samples = read_image_folder(dest / split)
        assert len(classes) == sp["identities"]
        with open(dest / f"{split}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        masked = [r for r in rows if r["image"] == "masked"]
        assert len(masked) == sp["pairs"]
        # One clean image per photo with a masked sample (a photo all of whose samples were
        # refused has none to go with).
        clean = [r for r in rows if r["image"] == "clean"]
        assert sorted(r["source"] for r in clean) == sorted({r["source"] for r in masked})
        assert sorted(str(dest / r["path"]) for r in rows) == sorted(p for p, _ in samples)
        for path, k in samples:
            row = next(r for r in rows if str(dest / r["path"]) == path)
            assert classes[k] == row["identity"] == Path(path).parent.name
            img = cv2.imread(path)
            assert img is not None and img.shape == (112, 112, 3)
    # The shards' bytes, copied: nothing rendered or encoded again.
    shard = m["splits"]["test"]["shards"][0]["path"]
    raw = next(iter(iter_samples(arcface_out / shard)))
    meta = json.loads(raw["json"])
    assert (dest / "test" / meta["identity"] / f"{raw['__key__']}.jpg").read_bytes() \
        == raw["masked.jpg"]
    # An export never mixes two outputs.
    res = CliRunner().invoke(main, ["export-folder", str(arcface_out), str(dest)])
    assert res.exit_code != 0 and "already holds files" in res.output


def test_torchvision_image_folder_loads_the_export(arcface_out, tmp_path):
    datasets = pytest.importorskip("torchvision.datasets",
                                   reason="torchvision is not installed")
    dest = tmp_path / "dest"
    cli("export-folder", str(arcface_out), str(dest), "--split", "test")
    ds = datasets.ImageFolder(str(dest / "test"))
    classes, samples = read_image_folder(dest / "test")
    assert ds.classes == classes and sorted(ds.samples) == sorted(samples)
    img, label = ds[0]
    assert img.size == (112, 112) and classes[label] in ("eileen-collins", "lfw-005", "lfw-010")


def test_pairs_are_masked_against_another_photo(arcface_out, tmp_path):
    dest = tmp_path / "dest"
    cli("export-folder", str(arcface_out), str(dest), "--with-clean")
    cli("pairs", str(arcface_out), "--n", "10", "--seed", "3")
    text = (arcface_out / "pairs-test.txt").read_text()
    lines = [x.split("\t") for x in text.splitlines()]
    assert lines[0] == ["1", "10"]
    same, diff = lines[1:11], lines[11:]
    assert len(diff) == 10 and len({tuple(p) for p in same + diff}) == 20
    for who, masked, clean in same:
        assert Path(masked).parent.name == Path(clean).parent.name == who
        assert Path(masked).stem.rsplit("_", 1)[0] != Path(clean).stem.rsplit("_", 1)[0]
    for who, _, other, clean in diff:
        assert who != other and Path(clean).parent.name == other
    for row in same + diff:
        for path in (row[1], row[-1]):
            assert path.startswith("test/") and (dest / path).is_file()
    assert all(p[-1].endswith("_clean.jpg") for p in same + diff)
    # The same seed gives the same file; more pairs than the split holds is a clear error.
    cli("pairs", str(arcface_out), "--n", "10", "--seed", "3", "--file", str(tmp_path / "b.txt"))
    assert (tmp_path / "b.txt").read_text() == text
    res = CliRunner().invoke(main, ["pairs", str(arcface_out), "--n", "100000"])
    assert res.exit_code != 0 and "ask for" in res.output


def test_outputs_without_identities_are_refused_by_the_exports(tmp_path, arcface_out):
    out = tmp_path / "plain"
    cli("generate", "--no-progress", "--src", "demo", "--out", str(out), "--types", "surgical",
        "--limit", "3", "--jobs", "1")
    for cmd in (["export-folder", str(out), str(tmp_path / "d")], ["pairs", str(out), "--n", "1"]):
        res = CliRunner().invoke(main, cmd)
        assert res.exit_code != 0 and "without identities" in res.output


@needs_shared()
def test_arcface_fit_over_real_celeba_faces():
    pytest.importorskip("mediapipe")
    from maskface.maskgen.decode import decode_image
    from maskface.maskgen.landmarks import NoFace, detect_landmarks

    files = sorted((SHARED_DATA / "celeba-wild").glob("*.jpg"))[:60]
    res = []
    for f in files:
        try:
            pts = detect_landmarks(decode_image(f.read_bytes())).points
        except NoFace:
            continue
        res.append(template_residual(pts, "arcface112", 256))
    r = np.array(res)
    assert len(r) >= 55
    # 3.3 px on average over all 3,000 faces, median 2.7 (docs/generating.md).
    assert r.mean() < 4.0 and np.median(r) < 3.5


@needs_shared()
def test_a_folder_per_person_of_celeba_faces_splits_by_person(tmp_path):
    """The shared faces in a folder per "person" by a fixed rule (five consecutive CelebA ids;
    not real identities, but a tree shaped like LFW's), generated, exported, read back."""
    pytest.importorskip("mediapipe")
    root = tmp_path / "people"
    for f in sorted((SHARED_DATA / "celeba-wild").glob("*.jpg"))[:200]:
        d = root / f"person-{int(f.stem) // 5}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f.resolve())
    out, dest = tmp_path / "out", tmp_path / "dest"
    cli("generate", "--no-progress", "--src", str(root), "--out", str(out), "--identity",
        "folder", "--crop", "arcface112", "--types", "surgical", "--jobs", "2")
    m = json.loads((out / "manifest.json").read_text())
    assert m["identities_in_several_splits"] == 0 and m["identities"] == len(list(root.iterdir()))
    assert all(m["splits"][s]["identities"] >= 2 for s in ("train", "val", "test"))
    cli("export-folder", str(out), str(dest))
    classes = {s: set(read_image_folder(dest / s)[0]) for s in ("train", "val", "test")}
    assert not (classes["train"] & classes["val"] or classes["train"] & classes["test"]
                or classes["val"] & classes["test"])
    assert sum(len(c) for c in classes.values()) == m["identities"]


def test_preview_shows_the_recognition_crop(tmp_path):
    pytest.importorskip("mediapipe")
    out = tmp_path / "sheet.png"
    cli("preview", "--src", "demo", "--keys", "astronaut", "--types", "surgical", "--crop",
        "arcface112", "--out", str(out))
    sheet = cv2.imread(str(out))
    assert sheet.shape == (16 + 112, 2 * 112, 3)  # the header strip, then clean | surgical
