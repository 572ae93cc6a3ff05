"""``maskface demo``: the whole product on the built-in faces, on a laptop CPU, in minutes.

generate (the ``demo`` source, every mask type) -> train a small RA-UNet briefly -> eval with
the baselines -> draw masks on whole photos and unmask them (plus a photo with no face, which
passes through). Everything lands in one folder with an ``index.md`` that says what each step
did and how long it took. The model is tiny and barely trained: this shows that the pieces
work together, not how well a properly trained model restores faces (see the README).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("maskface.demo")


@dataclass(frozen=True)
class DemoConfig:
    out: str = "out/demo"
    size: int = 128
    width: int = 16
    depth: int = 4
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    jobs: int = -1


def _photos(out: Path, seed: int) -> list[str]:
    """Photos for unmask: scikit-image's astronaut and cameraman wearing a generated mask, and
    a photo without a face."""
    from skimage import data

    from .maskgen.landmarks import detect_landmarks
    from .maskgen.photo import mask_photo
    from .maskgen.templates import registry

    out.mkdir(parents=True, exist_ok=True)
    reg = registry()
    written = []
    for name, kind in (("astronaut", "surgical"), ("camera", "kn95")):
        rgb = getattr(data, name)()
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        masked, _ = mask_photo(rgb, detect_landmarks(rgb).points, reg[kind],
                               np.random.default_rng(seed))
        path = out / f"{name}-{kind}.png"
        cv2.imwrite(str(path), cv2.cvtColor(masked, cv2.COLOR_RGB2BGR))
        written.append(path.name)
    cv2.imwrite(str(out / "coffee-no-face.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    written.append("coffee-no-face.png")
    return written


def run_demo(cfg: DemoConfig) -> dict:
    """Run every step into ``cfg.out``; returns what each step reported, with timings."""
    from .maskgen.pipeline import GenerateConfig, run_generate
    from .training.evaluate import EvalConfig, run_eval
    from .training.predict import Predictor
    from .training.train import TrainConfig, train
    from .training.unmask import unmask_files

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, dict] = {}

    t = time.perf_counter()
    log.info("1/4 generate: the demo faces, every mask type")
    s = run_generate(GenerateConfig(src="demo", out=str(out / "data"), types="all",
                                    per_face="all", seed=cfg.seed, size=cfg.size,
                                    jobs=cfg.jobs, progress=False))
    steps["generate"] = {"faces": s.faces_in, "masked": s.faces_ok, "pairs": s.pairs,
                         "failures": dict(s.failures), "seconds": round(time.perf_counter() - t, 1)}

    t = time.perf_counter()
    log.info("2/4 train: ra-unet width %d depth %d for %d steps on the CPU", cfg.width,
             cfg.depth, cfg.steps)
    last = train(TrainConfig(data=str(out / "data"), out=str(out / "run"), model="ra-unet",
                             width=cfg.width, depth=cfg.depth, max_steps=cfg.steps,
                             batch_size=cfg.batch_size, lr=cfg.lr, device="cpu", workers=1,
                             seed=cfg.seed, checkpoint_every=cfg.steps, log_every=50,
                             # Epochs of ~20 steps: validate at the end only.
                             val_batches=10, val_every=10**6))
    steps["train"] = last | {"seconds": round(time.perf_counter() - t, 1)}
    ck = out / "run" / "checkpoints" / "best.pt"
    if not ck.exists():
        ck = out / "run" / "checkpoints" / "last.pt"

    t = time.perf_counter()
    log.info("3/4 eval: the test pairs, against the masked input and OpenCV inpainting")
    report = run_eval(EvalConfig(checkpoints=(str(ck),), data=str(out / "data"),
                                 split="test", out=str(out / "eval"), device="cpu"))
    steps["eval"] = {"samples": report["samples"],
                     "methods": {k: {m: v[m] for m in ("psnr", "ssim", "psnr_masked",
                                                       "ssim_masked")}
                                 for k, v in report["methods"].items()},
                     "seconds": round(time.perf_counter() - t, 1)}

    t = time.perf_counter()
    log.info("4/4 unmask: whole photos with a generated mask, and one without a face")
    photos = _photos(out / "photos", cfg.seed)
    pred = Predictor.load(ck, device="cpu")
    summary = unmask_files([out / "photos"], pred, out / "unmask", side_by_side=True)
    steps["unmask"] = {k: summary[k] for k in ("photos", "photos_restored", "no_face",
                                                "faces_restored", "seconds_per_photo")}
    steps["unmask"]["seconds"] = round(time.perf_counter() - t, 1)
    (out / "demo.json").write_text(json.dumps(steps, indent=1) + "\n")
    (out / "index.md").write_text(_index(cfg, steps, photos))
    return steps


def _index(cfg: DemoConfig, steps: dict, photos: list[str]) -> str:
    from .training.evaluate import fmt

    g, tr, ev, un = steps["generate"], steps["train"], steps["eval"], steps["unmask"]
    total = sum(s["seconds"] for s in steps.values())
    lines = [
        "# maskface demo", "",
        f"Everything below ran on this machine in {total:.0f} s. The model is tiny "
        f"(RA-UNet, width {cfg.width}, depth {cfg.depth}) and trained for {cfg.steps} steps "
        f"on {g['pairs']} pairs from {g['faces']} faces: it shows the pieces working "
        "together, not what a trained model does (the README has real results).", "",
        f"1. **generate** ({g['seconds']} s): {g['masked']} of {g['faces']} faces masked, "
        f"{g['pairs']} pairs in `data/`. Failures: {g['failures'] or 'none'}.",
        f"2. **train** ({tr['seconds']} s): `run/checkpoints/`, metrics in "
        f"`run/metrics.jsonl`, sample grids in `run/samples/`.",
        f"3. **eval** ({ev['seconds']} s) on {ev['samples']} test pairs: `eval/report.md`, "
        "`eval/sheet.png`.", "",
        "| Method | PSNR | SSIM | PSNR masked | SSIM masked |", "|---|---|---|---|---|"]
    for name, m in ev["methods"].items():
        lines.append(f"| {name} | {fmt(m['psnr'], 2)} | {fmt(m['ssim'], 4)} | "
                     f"{fmt(m['psnr_masked'], 2)} | {fmt(m['ssim_masked'], 4)} |")
    lines += [
        "", f"4. **unmask** ({un['seconds']} s): {un['photos']} photos in `photos/` "
        f"({', '.join(photos)}); {un['faces_restored']} faces restored, {un['no_face']} "
        "photo without a face passed through unchanged. Results, side-by-side pictures and "
        "`summary.json` in `unmask/`.", "", "![unmask](unmask/sheets/sheet-01.jpg)", "",
        "![eval](eval/sheet.png)", ""]
    return "\n".join(lines)
