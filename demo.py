"""``maskface demo``: the whole product on the built-in faces, on a laptop CPU, in minutes.

generate (the ``demo`` source, every mask type) -> train a small RA-UNet briefly -> eval it
beside the bundled model and the baselines -> draw masks on whole photos and unmask them with
the bundled model (plus a photo with no face, which passes through). Everything lands in one
folder with an ``index.md`` that says what each step did and how long it took. The model the
demo trains is tiny and barely trained: it shows that the pieces work together; the bundled
model shows what a longer training does.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("maskface.demo")

# Off a terminal (CI, a log file, nohup) the demo says something at least this often.
HEARTBEAT_S = 30.0
NO_FACE_PHOTO = "coffee-no-face.png"


@dataclass(frozen=True)
class DemoConfig:
    out: str = "out/demo"
    size: int = 128
    width: int = 16
    depth: int = 4
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    # 300 steps from scratch: BatchNorm makes them count (the paper's plain network, and its
    # head's BatchNorm in training mode, need thousands of steps before colours settle).
    norm: str = "batch"
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
    cv2.imwrite(str(out / NO_FACE_PHOTO), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    written.append(NO_FACE_PHOTO)
    return written


class _LastLine(logging.Handler):
    """Remembers when maskface last logged anything."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.at = time.monotonic()


@contextmanager
def _heartbeat(enabled: bool, every: float = HEARTBEAT_S):
    """Off a terminal, a log line whenever maskface has been silent for ``every`` seconds, so
    a log shows the demo is alive (on a terminal the steps draw progress bars instead). Yields
    a function that names the step now running."""
    state = {"step": "starting", "since": time.monotonic()}

    def now_in(step: str) -> None:
        state["step"], state["since"] = step, time.monotonic()

    if not enabled:
        yield now_in
        return
    top = logging.getLogger("maskface")
    last = _LastLine()
    top.addHandler(last)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(min(5.0, every)):
            t = time.monotonic()
            if t - last.at >= every:
                log.info("... still in %s (%.0f s so far)", state["step"], t - state["since"])

    thread = threading.Thread(target=beat, name="demo-heartbeat", daemon=True)
    thread.start()
    try:
        yield now_in
    finally:
        stop.set()
        thread.join()
        top.removeHandler(last)


class _ExpectedNoFace(logging.Filter):
    """unmask warns about a photo without a face; in the demo that photo is there on purpose,
    so its line is an INFO that says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and NO_FACE_PHOTO in record.getMessage():
            record.msg = "%s: no face found, as expected (the demo's photo without a face); " \
                         "copied unchanged"
            record.args = (NO_FACE_PHOTO,)
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def run_demo(cfg: DemoConfig) -> dict:
    """Run every step into ``cfg.out``; returns what each step reported, with timings."""
    from .maskgen.pipeline import GenerateConfig, run_generate
    from .training import unmask as unmask_module
    from .training.checkpoint import DEFAULT_MODEL
    from .training.evaluate import EvalConfig, run_eval
    from .training.predict import Predictor
    from .training.train import TrainConfig, train
    from .training.unmask import unmask_files

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, dict] = {}
    unmask_log = unmask_module.log
    expected = _ExpectedNoFace()
    unmask_log.addFilter(expected)
    try:
        with _heartbeat(not sys.stderr.isatty()) as now_in:
            t = time.perf_counter()
            now_in("1/4 generate")
            log.info("1/4 generate: the demo faces, every mask type")
            s = run_generate(GenerateConfig(src="demo", out=str(out / "data"), types="all",
                                            per_face="all", seed=cfg.seed, size=cfg.size,
                                            jobs=cfg.jobs, progress=False))
            steps["generate"] = {"faces": s.faces_in, "masked": s.faces_ok, "pairs": s.pairs,
                                 "failures": dict(sorted(s.failures.items())),
                                 "seconds": round(time.perf_counter() - t, 1)}

            t = time.perf_counter()
            now_in("2/4 train")
            log.info("2/4 train: ra-unet width %d depth %d for %d steps on the CPU", cfg.width,
                     cfg.depth, cfg.steps)
            last = train(TrainConfig(data=str(out / "data"), out=str(out / "run"),
                                     model="ra-unet", width=cfg.width, depth=cfg.depth,
                                     norm=cfg.norm, mask_head=True, augment="flip",
                                     max_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                     device="cpu", workers=1, seed=cfg.seed,
                                     checkpoint_every=cfg.steps,
                                     # Off a terminal the loop prints a loss line about every
                                     # 30 s, at a multiple of log_every.
                                     log_every=10,
                                     # Epochs of ~20 steps: validate at the end only.
                                     val_batches=10, val_every=10**6))
            steps["train"] = last | {"seconds": round(time.perf_counter() - t, 1)}
            ck = out / "run" / "checkpoints" / "best.pt"
            if not ck.exists():
                ck = out / "run" / "checkpoints" / "last.pt"

            t = time.perf_counter()
            now_in("3/4 eval")
            log.info("3/4 eval: the test pairs, the model trained here beside the bundled one, "
                     "the masked input and OpenCV inpainting")
            checkpoints, labels = (str(ck),), ("trained here",)
            if DEFAULT_MODEL.exists():
                checkpoints, labels = (*checkpoints, str(DEFAULT_MODEL)), (*labels, "bundled")
            report = run_eval(EvalConfig(checkpoints=checkpoints, labels=labels,
                                         data=str(out / "data"), split="test",
                                         out=str(out / "eval"), device="cpu"))
            steps["eval"] = {"samples": report["samples"],
                             "methods": {k: {m: v[m] for m in ("psnr", "ssim", "psnr_masked",
                                                               "ssim_masked")}
                                         for k, v in report["methods"].items()},
                             "seconds": round(time.perf_counter() - t, 1)}

            t = time.perf_counter()
            now_in("4/4 unmask")
            log.info("4/4 unmask: whole photos with a generated mask, and one without a face")
            photos = _photos(out / "photos", cfg.seed)
            pred = Predictor.load(DEFAULT_MODEL if DEFAULT_MODEL.exists() else ck, device="cpu")
            summary = unmask_files([out / "photos"], pred, out / "unmask", side_by_side=True)
            steps["unmask"] = {k: summary[k] for k in ("photos", "photos_restored", "no_face",
                                                        "no_mask", "faces_restored",
                                                        "seconds_per_photo")}
            steps["unmask"]["model"] = "bundled" if DEFAULT_MODEL.exists() else "trained here"
            steps["unmask"]["seconds"] = round(time.perf_counter() - t, 1)
    finally:
        unmask_log.removeFilter(expected)
    (out / "demo.json").write_text(json.dumps(steps, indent=1) + "\n")
    (out / "index.md").write_text(_index(cfg, steps, photos))
    log.info("demo done in %.0f s", sum(s["seconds"] for s in steps.values()))
    return steps


def _count(n: int, one: str, many: str | None = None) -> str:
    """'1 photo', '3 photos'."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _failures(failures: dict[str, int]) -> str:
    """A generate run's failure counts as words: 'none', '12, all mouth-uncovered' or '3:
    mouth-uncovered 2, eyes-covered 1'."""
    if not failures:
        return "none"
    total = sum(failures.values())
    if len(failures) == 1:
        said = f"{total}, all {next(iter(failures))}"
    else:
        said = f"{total}: " + ", ".join(f"{reason} {n}" for reason, n in
                                        sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"{said} (`data/failures.jsonl` has one line each, with the source and, for a "
            "sample, its mask type)")


def _bundled_about() -> str:
    """The bundled model in a sentence, read from its own metadata, so the demo describes the
    file it ran and not an older one."""
    from .training.checkpoint import DEFAULT_MODEL
    from .training.weights import WeightsError, load_weights

    try:
        _, meta = load_weights(DEFAULT_MODEL)
        cfg = json.loads(meta["model_config"])
    except (WeightsError, KeyError, ValueError):
        return "No bundled model was found, so unmask used the model trained here."
    runs = sum(k == "train_command" or k.startswith("finetune_command") for k in meta)
    averaged = sum(k.startswith("average_command") for k in meta)
    how = f" and {_count(averaged, 'weight average')}" if averaged else ""
    return (f"The bundled model beside it (width {cfg['width']}, depth {cfg['depth']}, "
            f"{meta.get('image_size', '?')} px, made in {_count(runs, 'training run')}{how} "
            f"on CelebA pairs; machine: {meta.get('machine', 'not recorded')}; the commands are "
            "in its metadata and docs/results.md) shows what longer training does; unmask "
            "uses it.")


def _index(cfg: DemoConfig, steps: dict, photos: list[str]) -> str:
    from .training.evaluate import fmt

    g, tr, ev, un = steps["generate"], steps["train"], steps["eval"], steps["unmask"]
    total = sum(s["seconds"] for s in steps.values())
    lines = [
        "# maskface demo", "",
        f"Everything below ran on this machine in {total:.0f} s. The model trained here is "
        f"tiny (RA-UNet, width {cfg.width}, depth {cfg.depth}, with a mask head) and trained "
        f"for {_count(cfg.steps, 'step')} on {_count(g['pairs'], 'pair')} from "
        f"{_count(g['faces'], 'face')}: it shows the pieces working together. "
        f"{_bundled_about()}", "",
        f"1. **generate** ({g['seconds']} s): {g['masked']} of {_count(g['faces'], 'face')} "
        f"masked, {_count(g['pairs'], 'pair')} in `data/`. Not written: "
        f"{_failures(g['failures'])}.",
        f"2. **train** ({tr['seconds']} s): `run/checkpoints/`, metrics in "
        f"`run/metrics.jsonl`, sample grids in `run/samples/`.",
        f"3. **eval** ({ev['seconds']} s) on {_count(ev['samples'], 'test pair')}: "
        "`eval/report.md`, `eval/sheet.png`.", "",
        "| Method | PSNR | SSIM | PSNR masked | SSIM masked |", "|---|---|---|---|---|"]
    for name, m in ev["methods"].items():
        lines.append(f"| {name} | {fmt(m['psnr'], 2)} | {fmt(m['ssim'], 4)} | "
                     f"{fmt(m['psnr_masked'], 2)} | {fmt(m['ssim_masked'], 4)} |")
    passed = un["photos"] - un["photos_restored"]
    lines += [
        "", f"4. **unmask** ({un['seconds']} s, {un['model']} model): "
        f"{_count(un['photos'], 'photo')} in "
        f"`photos/` ({', '.join(photos)}): {_count(un['faces_restored'], 'face')} restored "
        f"in {_count(un['photos_restored'], 'photo')}; {_count(passed, 'photo')} copied "
        f"unchanged ({un['no_face']} without a face, as expected for `{NO_FACE_PHOTO}`). "
        "Results, before | after pictures in `unmask/compare/` and `summary.json` in "
        "`unmask/`.", "",
        "Before | after, from `unmask/sheets/sheet-01.jpg`:", "",
        "![unmask](unmask/sheets/sheet-01.jpg)", "",
        "Masked | each method | clean, test pairs of several mask types, from "
        "`eval/sheet.png`:", "",
        "![eval](eval/sheet.png)", ""]
    return "\n".join(lines)
