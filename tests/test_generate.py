"""maskface generate end to end: outputs, determinism, resume, scale-out, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskface.cli import main
from maskface.maskgen.landmark_cache import LandmarkCache
from maskface.maskgen.shards import ShardError, decode_sample, iter_samples

pytest.importorskip("mediapipe")

# Three types keep these runs quick; every type is rendered in test_render.py.
TYPES = "surgical,cloth,n95-valve"


def generate(*args: str) -> None:
    res = CliRunner().invoke(main, ["generate", "--no-progress", *args],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output


def outputs(out: Path) -> dict[str, bytes]:
    """Every file a run leaves, except run-time bookkeeping (timings, cache)."""
    files = {}
    for p in sorted(out.rglob("*")):
        rel = str(p.relative_to(out))
        if p.is_file() and not rel.startswith(".state") and rel != "landmarks.npz":
            files[rel] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, face_folder, bad_folder) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(face_folder, root / "faces")
    shutil.copytree(bad_folder, root / "bad", symlinks=True)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mixed_folder) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    generate("--src", str(mixed_folder), "--out", str(out), "--jobs", "1", "--shard-size", "3",
             "--seed", "5", "--per-face", "all", "--types", TYPES)
    return out


def test_outputs_and_accounting(reference, mixed_folder):
    m = json.loads((reference / "manifest.json").read_text())
    fails = [json.loads(line) for line in (reference / "failures.jsonl").read_text().splitlines()]
    reasons = {f["source"]: f["reason"] for f in fails}
    # Every awkward-but-valid picture was used; every bad one is accounted for with a reason.
    assert reasons == {"bad__empty": "empty", "bad__truncated": "truncated",
                       "bad__text": "not-an-image", "bad__noface": "no-face",
                       "bad__dangling": "unreadable", "bad__tiny": "too-small"}
    assert m["sources"] == 17 and m["failed_sources"] == len(fails) == 6
    assert m["pairs"] == 3 * (17 - 6) == sum(m["pairs_per_type"].values())
    # What found the landmarks, with versions (the two runtimes' shards differ by a hair).
    (found_with,) = m["landmarks_found_with"]
    assert found_with.startswith("FaceMesh of mediapipe 0.10.21 on ")
    seen = 0
    for split in m["splits"].values():
        for shard in split["shards"]:
            for raw in iter_samples(reference / shard["path"]):
                s = decode_sample(raw)
                meta = s["json"]
                assert meta["type"] in TYPES.split(",") and meta["seed"] == 5
                assert np.array(meta["landmarks"]).shape == (478, 3)
                assert s["masked"].shape == s["clean"].shape == (256, 256, 3)
                assert set(np.unique(s["mask"])) <= {0, 255} and s["mask"].any()
                # Away from the mask, the decoded JPEGs agree up to JPEG noise.
                far = cv2_dilate(s["mask"], 17) == 0
                diff = np.abs(s["masked"].astype(int) - s["clean"])[far]
                assert diff.mean() < 1.0
                seen += 1
    assert seen == m["pairs"]
    assert not list(reference.rglob("*.partial"))


def cv2_dilate(mask: np.ndarray, k: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask, np.ones((k, k), np.uint8))


def test_png_pairs_are_byte_exact_outside_the_mask(tmp_path, face_folder):
    out = tmp_path / "png"
    generate("--src", str(face_folder), "--out", str(out), "--jobs", "1", "--image-format",
             "png", "--limit", "2")
    for tar in out.rglob("*.tar"):
        for raw in iter_samples(tar):
            s = decode_sample(raw)
            outside = s["mask"] == 0
            assert np.array_equal(s["masked"][outside], s["clean"][outside])
            assert (s["masked"] != s["clean"]).any(axis=2)[~outside].mean() > 0.9


def test_frame_cut_greys_every_image_below_the_cut(tmp_path, face_folder):
    """Below the cut the pair shows what unmask shows a model beyond a photo: flat grey, and
    no mask there (it used to mirror the mouth, upside down, under the mask)."""
    from maskface.maskgen.align import OUTSIDE_GREY

    out = tmp_path / "cut"
    generate("--src", str(face_folder), "--out", str(out), "--jobs", "1", "--image-format",
             "png", "--limit", "2", "--frame-cut", "1", "--size", "128")
    seen = 0
    for tar in out.rglob("*.tar"):
        for raw in iter_samples(tar):
            s = decode_sample(raw)
            cut = s["json"]["frame_cut"]
            mouth = np.mean([s["json"]["landmarks"][i][1] for i in (61, 291)]) / 10
            chin = s["json"]["landmarks"][152][1] / 10
            assert mouth < cut <= chin + 1 and cut < 120
            assert (s["masked"][cut:] == OUTSIDE_GREY).all()
            assert (s["clean"][cut:] == OUTSIDE_GREY).all()
            assert not s["mask"][cut:].any()
            assert s["mask"][cut - 3:cut].any()  # the mask ran on to the cut
            outside = s["mask"] == 0  # still exact outside the mask
            assert np.array_equal(s["masked"][outside], s["clean"][outside])
            seen += 1
    assert seen >= 2


def test_same_bytes_whatever_the_number_of_jobs(tmp_path, reference, mixed_folder):
    out = tmp_path / "j2"
    generate("--src", str(mixed_folder), "--out", str(out), "--jobs", "2", "--shard-size", "3",
             "--seed", "5", "--per-face", "all", "--types", TYPES)
    assert outputs(out) == outputs(reference)


def test_other_seed_other_masks_same_split(tmp_path, reference, mixed_folder):
    out = tmp_path / "seed6"
    generate("--src", str(mixed_folder), "--out", str(out), "--jobs", "1", "--shard-size", "3",
             "--seed", "6", "--per-face", "all", "--types", TYPES,
             "--landmarks-cache", str(reference / "landmarks.npz"))
    a, b = outputs(reference), outputs(out)
    assert sorted(k for k in a if k.endswith(".tar")) == sorted(k for k in b if k.endswith(".tar"))
    assert any(a[k] != b[k] for k in a if k.endswith(".tar"))


def test_changed_settings_in_the_same_output_are_refused(tmp_path, reference, mixed_folder):
    res = CliRunner().invoke(main, ["generate", "--src", str(mixed_folder), "--out",
                                    str(reference), "--shard-size", "3", "--seed", "99",
                                    "--per-face", "all", "--types", TYPES])
    assert res.exit_code != 0 and "seed" in res.output


def test_rendering_from_the_cache_needs_no_landmark_runtime(tmp_path, reference, mixed_folder):
    out = tmp_path / "nomp"
    before = (reference / "landmarks.npz").stat().st_mtime_ns
    code = ("import sys; sys.modules['mediapipe'] = sys.modules['ai_edge_litert'] = None; "
            "from maskface.cli import main; main()")
    subprocess.run([sys.executable, "-c", code, "generate", "--no-progress", "--src",
                    str(mixed_folder), "--out", str(out), "--jobs", "1", "--shard-size", "3",
                    "--seed", "5", "--per-face", "all", "--types", TYPES, "--landmarks-cache",
                    str(reference / "landmarks.npz")], check=True, capture_output=True)
    assert outputs(out) == outputs(reference)
    # A complete cache is only read (it may be shared, read-only, between runs and machines).
    assert (reference / "landmarks.npz").stat().st_mtime_ns == before
    cache = LandmarkCache.load(reference / "landmarks.npz")
    assert len(cache) == 17 - 5  # everything that decoded; no-face results are cached too
    assert cache.entries["bad__noface"].reason == "no-face"
    assert {e.found_with for e in cache.entries.values()} == set(
        json.loads((out / "manifest.json").read_text())["landmarks_found_with"])


def test_a_cache_from_before_found_with_was_recorded_still_loads(tmp_path, reference):
    with np.load(reference / "landmarks.npz") as z:
        old = {k: z[k] for k in z.files if k != "found_with"}
    np.savez(tmp_path / "old.npz", **old)
    cache = LandmarkCache.load(tmp_path / "old.npz")
    fresh = LandmarkCache.load(reference / "landmarks.npz")
    assert cache.entries.keys() == fresh.entries.keys()
    assert {e.found_with for e in cache.entries.values()} == {""}
    key = next(k for k, e in fresh.entries.items() if e.points is not None)
    np.testing.assert_array_equal(cache.entries[key].points, fresh.entries[key].points)


def test_killed_run_resumes_to_the_same_result(tmp_path, face_folder):
    src = tmp_path / "many"
    for i in range(4):
        shutil.copytree(face_folder, src / f"copy{i}")
    args = ["generate", "--no-progress", "--src", str(src), "--jobs", "1", "--shard-size", "2",
            "--per-face", "all", "--types", TYPES]
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, "-m", "maskface.cli", *args, "--out", str(whole)],
                   check=True, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "maskface.cli", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / ".state").glob("*-0*.json"))) >= 3:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / ".state").glob("*-0*.json")))
    assert 0 < done_before < 12, "the kill should land mid-run"
    assert not (out / "manifest.json").exists()
    res = subprocess.run([sys.executable, "-m", "maskface.cli", *args, "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "shards already done" in res.stdout  # the summary is the result: stdout
    assert outputs(out) == outputs(whole)


def test_parts_on_several_machines_make_the_whole(tmp_path, reference, mixed_folder):
    out = tmp_path / "parts"
    common = ["--src", str(mixed_folder), "--out", str(out), "--jobs", "1", "--shard-size", "3",
              "--seed", "5", "--per-face", "all", "--types", TYPES]
    generate(*common, "--shard-index", "0", "--num-shards", "2")
    first = {p.name for p in (out / ".state").glob("*-0*.json")}
    assert first and not (out / "manifest.json").exists()
    generate(*common, "--shard-index", "1", "--num-shards", "2")
    second = {p.name for p in (out / ".state").glob("*-0*.json")} - first
    assert second and not (first & second)
    assert outputs(out) == outputs(reference)


def test_dask_cluster_on_loopback(tmp_path, reference, mixed_folder):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        generate("--src", str(mixed_folder), "--out", str(out), "--shard-size", "3", "--seed",
                 "5", "--per-face", "all", "--types", TYPES, "--scheduler",
                 cluster.scheduler_address)
    assert outputs(out) == outputs(reference)


def test_a_source_with_no_usable_image_fails_clearly(tmp_path, bad_folder):
    src = tmp_path / "allbad"
    src.mkdir()
    for name in ("empty.jpg", "text.png", "truncated.jpg"):
        shutil.copy(bad_folder / name, src / name)
    res = CliRunner().invoke(main, ["generate", "--src", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "no usable image" in res.output and "failures.jsonl" in res.output
    res = CliRunner().invoke(main, ["generate", "--src", str(tmp_path / "nothing-here")])
    assert res.exit_code != 0


def test_demo_and_types_commands(tmp_path):
    res = CliRunner().invoke(main, ["types"])
    assert res.exit_code == 0 and len(res.output.split()) >= 10
    names = set(res.output.split())
    assert {"surgical", "cloth", "n95", "kn95", "gas-respirator", "bandana"} <= names
    out = tmp_path / "demo"
    generate("--src", "demo", "--out", str(out), "--types", "surgical", "--limit", "4")
    m = json.loads((out / "manifest.json").read_text())
    assert m["pairs"] == 4 and m["pairs_per_type"] == {"surgical": 4}


def test_wear_styles_are_drawn_and_their_rules_hold(tmp_path, reference, mixed_folder):
    out = tmp_path / "wear"
    generate("--src", str(mixed_folder), "--out", str(out), "--jobs", "1", "--per-face", "all",
             "--types", TYPES, "--wear", "proper=0.4,nose-exposed=0.3,under-chin=0.3",
             "--landmarks-cache", str(reference / "landmarks.npz"))
    wears = []
    for tar in out.rglob("*.tar"):
        for raw in iter_samples(tar):
            meta = json.loads(raw["json"])
            wears.append(meta["wear"])
            assert meta["placement"]["eyes_free"]
            if meta["wear"] == "under-chin":
                assert not meta["placement"]["mouth_covered"]
    assert set(wears) == {"proper", "nose-exposed", "under-chin"}
    res = CliRunner().invoke(main, ["generate", "--src", "demo", "--wear", "sideways=1",
                                    "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "unknown style" in res.output


def test_preview_rejects_exactly_what_generate_does_not_write(tmp_path):
    """The contact sheet applies generate's placement check: the cameraman's near-profile
    (mirrored) fails it for several types, and both tools name the same samples."""
    from maskface.maskgen.preview import make_sheet

    types = "surgical,kn95,bandana"
    out = tmp_path / "gen"
    generate("--src", "demo", "--out", str(out), "--types", types, "--per-face", "all")
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    keys = ["cameraman", "cameraman-mirror"]
    written = {(f["source"], f["type"]): f["reason"] for f in failures
               if f["source"] in keys and "type" in f}
    assert written, "the near-profile should fail some placement checks"
    sheet = make_sheet("demo", str(tmp_path / "sheet.png"), types=types, keys=keys, size=256,
                       faces=2)
    shown = {(k, t): r for k, by_type in sheet["rejected"].items() for t, r in by_type.items()}
    assert shown == written


def test_preview_dims_faces_turned_too_far_as_generate_refuses_them(tmp_path):
    """A type that allows almost no head turn: generate refuses nearly every face as
    turned-too-far, and the contact sheet dims and names exactly those samples."""
    from maskface.maskgen.preview import make_sheet
    from maskface.maskgen.templates import ASSETS_DIR

    strict = json.loads((ASSETS_DIR / "surgical.json").read_text())
    strict.update(name="strict", max_yaw=1.0)
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "strict.json").write_text(json.dumps(strict))
    keys = ["astronaut", "astronaut-mirror", "cameraman", "lfw-003"]
    out = tmp_path / "gen"
    generate("--src", "demo", "--out", str(out), "--types", "strict,surgical", "--per-face",
             "all", "--templates", str(pack))
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    written = {(f["source"], f["type"]): f["reason"] for f in failures
               if f["source"] in keys and "type" in f}
    assert "turned-too-far" in written.values()
    size = 256  # generate's crop size: placement is judged at the size a sample is drawn
    sheet = make_sheet("demo", str(tmp_path / "sheet.png"), types="strict,surgical", keys=keys,
                       size=size, faces=len(keys), templates=(str(pack),))
    shown = {(k, t): r for k, by_type in sheet["rejected"].items() for t, r in by_type.items()}
    assert shown == written
    img = cv2.cvtColor(cv2.imread(str(tmp_path / "sheet.png")), cv2.COLOR_BGR2RGB)
    top = img.shape[0] - len(keys) * size  # the column header's height
    for row, key in enumerate(sheet["faces"]):
        clean, strict_tile = (img[top + row * size:top + (row + 1) * size,
                                  col * size:(col + 1) * size] for col in (0, 1))
        if (key, "strict") in written:  # dimmed: a third of the clean face's light
            assert strict_tile[: size // 2].mean() < 0.5 * clean[: size // 2].mean()


def test_preview_sheet_names_its_columns(tmp_path):
    """A header over the sheet names each column (clean, then the types), in dark text on
    white, as wide as the faces below it."""
    from maskface.maskgen.preview import make_sheet

    size = 128
    sheet = make_sheet("demo", str(tmp_path / "sheet.png"), types="surgical,gas-respirator",
                       keys=["astronaut"], size=size, faces=1)
    assert sheet["columns"] == ["clean", "surgical", "gas-respirator"]
    img = cv2.imread(str(tmp_path / "sheet.png"), cv2.IMREAD_GRAYSCALE)
    top = img.shape[0] - size
    assert img.shape[1] == 3 * size and 16 <= top <= size // 4
    cells = [img[:top, k * size:(k + 1) * size] for k in range(3)]
    for cell in cells:
        dark = cell < 100
        assert 0.02 < dark.mean() < 0.5  # text on a white ground
        cols = np.flatnonzero(dark.any(0))
        assert cols.min() > 2 and cols.max() < size - 3  # within its own column
    assert not np.array_equal(cells[1], cells[2])


def test_progress_lines_off_a_terminal_also_while_a_shard_runs(tmp_path, face_folder,
                                                               monkeypatch, caplog):
    """Off a terminal, generate logs how far it is every PROGRESS_EVERY seconds, also while
    no shard has finished yet, and once at the end."""
    import logging
    import re

    from maskface.maskgen import pipeline

    real = pipeline.generate_shard

    def long_shard(*args):
        time.sleep(0.5)
        return real(*args)

    monkeypatch.setattr(pipeline, "generate_shard", long_shard)
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY", 0.1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    caplog.set_level(logging.INFO, logger="maskface.generate")
    pipeline.run_generate(pipeline.GenerateConfig(
        src=str(face_folder), out=str(tmp_path / "out"), types="surgical", jobs=1))
    lines = [r.getMessage() for r in caplog.records if "shards done" in r.getMessage()]
    assert any(line.startswith("0/6 faces (0 of") for line in lines)
    assert re.match(r"6/6 faces \((\d+) of \1 shards done\)", lines[-1]), lines


def test_a_changed_source_is_re_planned_never_dropped(tmp_path, face_folder, bad_folder, caplog):
    """Images added to (or removed from) a finished run's source are planned in on the next
    run of the same command: the result is what a fresh run on the new source gives."""
    import logging

    src = tmp_path / "src"
    shutil.copytree(face_folder, src)
    out, cache = tmp_path / "out", tmp_path / "lm.npz"
    args = ["--src", str(src), "--jobs", "1", "--shard-size", "2", "--types", "surgical",
            "--landmarks-cache", str(cache)]
    generate(*args, "--out", str(out))
    first = json.loads((out / "manifest.json").read_text())
    for n in ("new1", "new2"):
        shutil.copy(bad_folder / "good.jpg", src / f"{n}.jpg")
    with caplog.at_level(logging.WARNING, logger="maskface.generate"):
        generate(*args, "--out", str(out))
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "maskface.generate"]
    assert "the source changed since this output was planned: 2 (new1, new2) new" in warning
    m = json.loads((out / "manifest.json").read_text())
    assert m["sources"] == first["sources"] + 2 and m["pairs"] == first["pairs"] + 2
    written = {json.loads(raw["json"])["source"] for shard in out.rglob("*.tar")
               for raw in iter_samples(shard)}
    assert {"new1", "new2"} <= written
    fresh = tmp_path / "fresh"
    generate(*args, "--out", str(fresh))
    assert outputs(out) == outputs(fresh)

    (src / "sub" / "mirror.PNG").unlink()  # and one gone
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="maskface.generate"):
        generate(*args, "--out", str(out))
    assert "0 new, 1 (sub__mirror) gone" in caplog.records[-1].getMessage()
    shutil.rmtree(fresh)
    generate(*args, "--out", str(fresh))
    assert outputs(out) == outputs(fresh)
    res = CliRunner().invoke(main, ["verify", str(out)])
    assert res.exit_code == 0 and "all whole" in res.stdout  # the result, on stdout


def test_each_command_writes_its_result_alone_on_stdout(tmp_path, reference, mixed_folder):
    """A script captures stdout and gets the result only (the summary line, or JSON that
    parses on its own); pointers and notes go to stderr."""
    out = tmp_path / "again"
    shutil.copytree(reference, out)
    res = CliRunner().invoke(main, [
        "generate", "--no-progress", "--src", str(mixed_folder), "--out", str(out), "--jobs",
        "1", "--shard-size", "3", "--seed", "5", "--per-face", "all", "--types", TYPES])
    assert res.exit_code == 0, res.output
    (summary,) = res.stdout.splitlines()
    assert summary.startswith("faces in ") and "shards already done" in summary
    assert f"output: {out}" in res.stderr
    res = CliRunner().invoke(main, ["verify", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    shards = sum(len(sp["shards"]) for sp in m["splits"].values())
    assert res.stdout == f"{out}: {shards} shards, {m['pairs']} pairs, all whole\n"
    res = CliRunner().invoke(main, ["preview", "--shards", str(out), "--out",
                                    str(tmp_path / "p.png"), "--samples", "2"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["samples"]) == 2


def test_verify_and_readers_refuse_a_damaged_shard(tmp_path, reference):
    """The manifest carries each shard's counts and sha256; `maskface verify` checks them and
    names the bad file, and the reader training and eval use refuses the shard too."""
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    res = CliRunner().invoke(main, ["verify", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    shard = max((s for sp in m["splits"].values() for s in sp["shards"]),
                key=lambda s: s["pairs"])
    assert {"members", "bytes", "sha256", "sources", "sources_digest"} <= set(shard)
    path = out / shard["path"]
    import tarfile

    with tarfile.open(path) as tar:
        second = tar.getmembers()[1].offset  # where the second member's header starts
    data = bytearray(path.read_bytes())
    data[second + 5] ^= 0x01  # in the header of a member after the first: tarfile stops there
    path.write_bytes(bytes(data))
    res = CliRunner().invoke(main, ["verify", str(out)])
    assert res.exit_code == 1
    assert f"BAD {path}: " in res.output and "1 problem(s)" in res.output
    with pytest.raises(ShardError, match=str(path)):
        list(iter_samples(path))


def test_a_killed_generate_leaves_no_worker_running(tmp_path, face_folder):
    """kill -9 of generate's main process: its worker processes end within seconds, instead
    of finishing their queued shards into OUT and idling for minutes."""
    psutil = pytest.importorskip("psutil")
    src = tmp_path / "many"
    for i in range(6):
        shutil.copytree(face_folder, src / f"copy{i}")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "maskface.cli", "generate", "--no-progress",
                             "--src", str(src), "--out", str(out), "--jobs", "2",
                             "--shard-size", "1", "--types", "surgical"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list((out / ".state").glob("*-0*.json")):  # the workers are busy with shards
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the kill"
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"{len(alive)} worker(s) still running 10 s after the kill"
    done = sorted((out / ".state").glob("*-0*.json"))
    time.sleep(2)
    assert sorted((out / ".state").glob("*-0*.json")) == done


@pytest.mark.parametrize("flags, message", [
    (["--jobs", "0"], "--jobs must be a number of worker processes (1 or more), or -1"),
    (["--jobs", "-3"], "--jobs must be a number of worker processes (1 or more), or -1"),
    (["--per-face", "99", "--types", "surgical,cloth"], "--per-face 99: more than the 2"),
    (["--jpeg-quality", "500"], "--jpeg-quality must be between 1 and 100, got 500"),
    (["--jpeg-quality", "0"], "--jpeg-quality must be between 1 and 100, got 0"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--limit", "-1"], "--limit must be at least 1"),
    (["--size", "8"], "--size must be between 64 and 2048"),
    (["--shard-size", "0"], "--shard-size must be at least 1"),
    (["--frame-cut", "nan"], "--frame-cut must be between 0 and 1"),
    (["--wear", "proper=nan"], "the probability must be a finite number"),
    (["--split-ratios", "a,b"], "--split-ratios needs three numbers"),
    (["--split-ratios", "nan,1,1"], "--split-ratios: three numbers >= 0"),
    (["--num-shards", "0", "--shard-index", "0"], "--num-shards must be at least 1"),
])
def test_bad_flags_are_one_line_errors(tmp_path, flags, message):
    res = CliRunner().invoke(main, ["generate", "--src", "demo", "--out", str(tmp_path / "o"),
                                    *flags])
    assert res.exit_code != 0 and (res.exception is None or isinstance(res.exception, SystemExit))
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_files_in_the_way_are_one_line_errors_naming_them(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "broken.json").write_text("{not json")
    state = tmp_path / "o" / ".state"
    state.mkdir(parents=True)
    (state / "config.json").write_text("{not json")
    for args, name in (
            (["generate", "--src", "demo", "--out", str(a_file)], f"--out {a_file}: exists"),
            (["generate", "--src", "demo", "--out", str(tmp_path / "x"), "--templates",
              str(pack)], str(pack / "broken.json")),
            (["types", "--templates", str(pack)], str(pack / "broken.json")),
            (["generate", "--src", "demo", "--out", str(tmp_path / "o")],
             str(state / "config.json")),
            (["preview", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "p.png")],
             str(tmp_path / "missing"))):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (args, res.output)
        assert name in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_jobs_beyond_the_cores_are_capped_with_a_note(monkeypatch, caplog):
    import logging

    from maskface.maskgen import pipeline

    monkeypatch.setattr(pipeline, "available_cores", lambda: 4)
    with caplog.at_level(logging.WARNING, logger="maskface.generate"):
        assert pipeline._worker_count(1000, 50) == 4
    assert "--jobs 1000: this machine has 4 cores; using 4" in caplog.text
    assert pipeline._worker_count(-1, 50) == 4
    assert pipeline._worker_count(-1, 3) == 3  # no more workers than shards...
    assert pipeline._worker_count(4, 1) == 2  # ...but still in worker processes
    assert pipeline._worker_count(1, 50) == 1


def test_preview_shows_the_keys_in_the_order_asked_and_names_a_missing_one(tmp_path):
    from maskface.maskgen.preview import make_sheet

    sheet = make_sheet("demo", str(tmp_path / "sheet.png"), types="surgical",
                       keys=["cameraman", "astronaut"], size=64, faces=1)
    assert sheet["faces"] == ["cameraman", "astronaut"]  # every key, in the order given
    with pytest.raises(ValueError, match="no-such-face") as e:
        make_sheet("demo", str(tmp_path / "x.png"), keys=["astronaut", "no-such-face"])
    # It shows what a key looks like there: how many sources, and the first few (not all).
    assert "has 21 sources: astronaut, astronaut-dim, " in str(e.value)
    assert str(e.value).endswith(", ...)") and "lfw" not in str(e.value)
    res = CliRunner().invoke(main, ["preview", "--keys", "astronaut, no-such-face", "--out",
                                    str(tmp_path / "x.png")])  # a space after the comma is fine
    assert res.exit_code == 1 and "no source named no-such-face (" in res.stderr


def test_preview_cuts_the_frame_as_generate_does(tmp_path):
    from maskface.maskgen.align import OUTSIDE_GREY
    from maskface.maskgen.preview import make_sheet

    size = 128
    sheet = make_sheet("demo", str(tmp_path / "cut.png"), types="surgical", keys=["astronaut"],
                       size=size, frame_cut=1.0)
    img = cv2.cvtColor(cv2.imread(str(tmp_path / "cut.png")), cv2.COLOR_BGR2RGB)
    row = img[img.shape[0] - size:]
    assert sheet["columns"] == ["clean", "surgical"]
    bottom = row[-4:]  # the frame ends between the lips and the chin: flat grey below
    assert (bottom == OUTSIDE_GREY).all()
    make_sheet("demo", str(tmp_path / "whole.png"), types="surgical", keys=["astronaut"],
               size=size)
    whole = cv2.imread(str(tmp_path / "whole.png"))
    assert not (whole[-4:] == OUTSIDE_GREY).all()


def test_a_sheet_of_written_pairs_shows_one_pair_per_face_first(reference, tmp_path):
    from maskface.maskgen.preview import sheet_from_shards

    sources = {}
    for shard in sorted(reference.glob("*/*.tar")):
        for raw in iter_samples(shard):
            sources[raw["__key__"]] = json.loads(raw["json"])["source"]
    faces = set(sources.values())
    assert len(sources) > len(faces) >= 2, "the run should hold several pairs per face"
    sheet = sheet_from_shards(str(reference), str(tmp_path / "s.png"), samples=len(faces))
    assert {sources[k] for k in sheet["samples"]} == faces  # every face once, not one face's types
    more = sheet_from_shards(str(reference), str(tmp_path / "m.png"), samples=len(faces) + 2)
    assert len(more["samples"]) == len(faces) + 2  # then a face's other pairs fill the sheet
    assert cv2.imread(str(tmp_path / "m.png")) is not None


def test_a_sheet_of_written_pairs_shows_the_keys_asked_for_and_refuses_render_options(
        reference, tmp_path):
    from maskface.maskgen.preview import sheet_from_shards

    by_face: dict[str, list[str]] = {}
    for shard in sorted(reference.glob("*/*.tar")):
        for raw in iter_samples(shard):
            by_face.setdefault(json.loads(raw["json"])["source"], []).append(raw["__key__"])
    a, b = sorted(f for f, pairs in by_face.items() if len(pairs) > 1)[:2]
    sheet = sheet_from_shards(str(reference), str(tmp_path / "k.png"), keys=[b, a])
    assert sheet["samples"] == by_face[b] + by_face[a]  # those faces only, in the order asked
    few = sheet_from_shards(str(reference), str(tmp_path / "f.png"), keys=[b, a], samples=2)
    assert few["samples"] == [by_face[b][0], by_face[a][0]]  # every face, however few samples
    with pytest.raises(ValueError, match=f"no source named no-such-face .*{a}"):
        sheet_from_shards(str(reference), str(tmp_path / "x.png"), keys=[a, "no-such-face"])
    res = CliRunner().invoke(main, ["preview", "--shards", str(reference), "--keys", a,
                                    "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0 and json.loads(res.stdout)["samples"] == by_face[a]
    for args, named in ((["--shards", str(reference), "--types", "surgical", "--no-hair"],
                         "--types, --hair/--no-hair: only for rendering from --src"),
                        (["--samples", "3"], "--samples: only with --shards")):
        res = CliRunner().invoke(main, ["preview", *args, "--out", str(tmp_path / "r.png")])
        assert res.exit_code == 2 and named in res.stderr, res.output


def test_each_written_pair_on_the_sheet_is_labelled_with_its_face_and_type(reference, tmp_path):
    from maskface.maskgen.preview import column_header, sheet_from_shards

    sheet = sheet_from_shards(str(reference), str(tmp_path / "s.png"), samples=2, columns=2)
    img = cv2.cvtColor(cv2.imread(str(tmp_path / "s.png")), cv2.COLOR_BGR2RGB)
    metas = {}
    for shard in sorted(reference.glob("*/*.tar")):
        for raw in iter_samples(shard):
            metas[raw["__key__"]] = json.loads(raw["json"])
    side = metas[sheet["samples"][0]]["size"]
    strip = max(16, side // 8)
    assert img.shape[0] == strip + side  # one row: the labels above the pairs
    for i, key in enumerate(sheet["samples"]):  # "SOURCE: TYPE" over masked | mask | clean
        left = i * (3 * side + 6)
        want = column_header([f"{metas[key]['source']}: {metas[key]['type']}"], 3 * side, strip)
        assert (img[:strip, left:left + 3 * side] == want).all(), key
