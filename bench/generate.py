"""Benchmark `maskface generate`: faces/s cold (detecting) and warm (landmark cache), for
--jobs 1 and 2, one mask type and all types; time per stage; share of faces masked.

    python bench/generate.py [--src ../shared/data/celeba-wild] [--limit N] [--jobs 1,2]
                             [--kinds cold-surgical,...] [--repeat N]
                             [--crops default,arcface112]

Each configuration runs as its own `maskface generate` process (start-up included) into a
fresh output directory, after a 4-face warm-up run that compiles the rendering kernels on a
fresh install (numba caches them on disk; its time is reported as warm_up_s). Cold runs
detect landmarks; warm runs re-render from the landmark cache that the first cold run wrote.
With several ``--crops``, each configuration runs once per crop, the crops interleaved like
the ``--jobs`` values (runs of a non-default crop are named ``...-arcface112``). Before and
after each run, a fixed one-thread workload is timed (``gauge_ms``): on a shared VM,
whose speed drifts by tens of per cent within minutes, runs compare only with their gauges.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-wild"


def gauge_ms() -> float:
    """Milliseconds for a fixed one-thread workload of the generator's kinds (OpenCV warps and
    JPEG encoding, small numpy calls, plain Python), median of 7: how fast this machine is
    right now. On the project's 2-core VM it read 3.7-4.0 ms in its fast phase and 6.5-7.5 ms
    in its slow spells; a higher one means a slower moment."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8),
                           (0, 0), 2)
    m = np.array([[1.1, 0.1, -12.0], [-0.1, 1.1, 9.0]])

    def work() -> None:
        for _ in range(4):
            cv2.imencode(".jpg", cv2.warpAffine(img, m, (256, 256)),
                         [cv2.IMWRITE_JPEG_QUALITY, 95])
        a = np.zeros(64)
        for _ in range(300):
            a = a * 0.5 + 1.0
        sum(i * i for i in range(20000))

    return round(1000 * statistics.median(timeit.repeat(work, number=1, repeat=7)), 2)


def run(src: str, out: Path, jobs: int, types: str, per_face: str, cache: Path | None,
        limit: int | None, crop: str = "default") -> dict:
    cmd = [sys.executable, "-m", "maskface.cli", "generate", "--no-progress", "--src", src,
           "--out", str(out), "--jobs", str(jobs), "--types", types, "--per-face", per_face,
           "--crop", crop]
    if cache is not None:
        cmd += ["--landmarks-cache", str(cache)]
    if limit:
        cmd += ["--limit", str(limit)]
    before = gauge_ms()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = gauge_ms()
    s = json.loads((out / ".state" / "last_run.json").read_text())
    m = json.loads((out / "manifest.json").read_text())
    busy = sum(s["stage_seconds"].values())
    return {
        "jobs": jobs, "crop": crop, "types": types, "per_face": per_face,
        "wall_s": round(wall, 2),
        "faces": s["faces_in"], "faces_masked": s["faces_ok"], "pairs": s["pairs"],
        "faces_per_s": round(s["faces_in"] / wall, 1),
        "pairs_per_s": round(s["pairs"] / wall, 1),
        "pairs_per_s_per_core": round(s["pairs"] / wall / jobs, 1),
        "faces_per_s_per_core": round(s["faces_in"] / wall / jobs, 1),
        "ms_per_face_by_stage": {k: round(1000 * v / max(s["faces_in"], 1), 3)
                                 for k, v in s["stage_seconds"].items()},
        "worker_busy_share": round(busy / (wall * jobs), 3),
        "gauge_ms": [before, after],
        "failures": m["failures"], "render_failures": m["render_failures"],
    }


KINDS = ("cold-surgical", "cold-all", "warm-surgical", "warm-all")


def keep_cache(out: Path, root: Path, keep: str | None) -> Path:
    """The landmark cache a cold run wrote, moved to ``root`` (and the run's outputs deleted,
    unless kept: a full run writes gigabytes of shards)."""
    cache = root / "landmarks.npz"
    shutil.copy(out / "landmarks.npz", cache)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="Which of cold-surgical, cold-all, warm-surgical, warm-all to run.")
    ap.add_argument("--repeat", type=int, default=1,
                    help="Runs per configuration, --jobs values interleaved. The run with the "
                         "median wall time (the lower middle one for an even count) is "
                         "reported, with every wall time: machines with noisy neighbours vary "
                         "by 10-40 %% from minute to minute.")
    ap.add_argument("--landmarks-cache", default=None,
                    help="Cache for the warm runs (else the first cold run's, or one made by "
                         "a single unreported cold run).")
    ap.add_argument("--crops", default="default",
                    help="Comma list of --crop values to run each configuration with.")
    ap.add_argument("--keep", default=None,
                    help="Keep outputs in this directory (else they are deleted as measured).")
    args = ap.parse_args()
    if not Path(args.src).exists():
        sys.exit(f"no source at {args.src} (pass --src)")
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS) or args.repeat < 1:
        sys.exit(f"--kinds: a comma list of {', '.join(KINDS)}; --repeat: at least 1")
    root = Path(args.keep or tempfile.mkdtemp(prefix="maskface-bench-"))
    jobs = [int(j) for j in args.jobs.split(",")]
    crops = [c for c in args.crops.split(",") if c]
    # The rendering kernels compile on first use and are cached on disk (numba): a one-off
    # cost of an installation, not of a run. Pay it here, once, and report it apart.
    t0 = time.perf_counter()
    run(args.src, root / "warm-up", 1, "all", "all", None, 4)
    warm_up_s = round(time.perf_counter() - t0, 2)
    results = []
    cache = Path(args.landmarks_cache) if args.landmarks_cache else None
    if cache is None and not any(k.startswith("cold") for k in kinds):
        # The warm runs need a landmark cache: one cold run makes it (not repeated, not reported).
        run(args.src, root / "cache-run", max(jobs), "surgical", "1", None, args.limit)
        cache = keep_cache(root / "cache-run", root, args.keep)
    for kind in [k for k in KINDS if k in kinds]:
        warm = kind.startswith("warm")
        types, per_face = ("surgical", "1") if kind.endswith("surgical") else ("all", "all")
        runs: dict[tuple[int, str], list[dict]] = {(j, c): [] for j in jobs for c in crops}
        for rep in range(args.repeat):
            for j, crop in runs:
                name = f"{kind}-j{j}" + ("" if crop == "default" else f"-{crop}")
                out = root / f"{name}-{rep}"
                r = run(args.src, out, j, types, per_face, cache if warm else None, args.limit,
                        crop)
                r["run"] = name
                r["landmarks"] = "cache" if warm else "detect"
                runs[j, crop].append(r)
                print(json.dumps(r), file=sys.stderr)
                if not warm and cache is None:
                    cache = keep_cache(out, root, args.keep)
                elif not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
        for jc in runs:
            walls = sorted(r["wall_s"] for r in runs[jc])
            median = sorted(runs[jc], key=lambda r: r["wall_s"])[(len(walls) - 1) // 2]
            results.append({**median, "wall_s_all": walls} if args.repeat > 1 else median)
    by = {r["run"]: r for r in results}
    first = results[0]
    summary = {
        "bench": "generate", "src": args.src, "limit": args.limit, "repeat": args.repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "warm_up_s": warm_up_s,  # 4 faces, all types, kernels compiled or loaded
        "faces": first["faces"],
        "success_rate": round(first["faces_masked"] / max(first["faces"], 1), 5),
        "runs": results,
    }
    for kind in KINDS:
        if {f"{kind}-j1", f"{kind}-j2"} <= by.keys():
            summary[f"speedup_j2_{kind}"] = round(by[f"{kind}-j2"]["pairs_per_s"]
                                                  / by[f"{kind}-j1"]["pairs_per_s"], 2)
    print(json.dumps(summary, indent=1))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
