"""``maskface eval``: checkpoints and baselines measured the same way on held-out pairs.

Every method restores the same masked inputs (the clean image outside the mask, as in
training). Its 8-bit output is compared with the clean image by PSNR, SSIM and MAE over the
whole crop and over the masked region only, overall, per mask type and per wear style.
Baselines: the masked input itself and OpenCV inpainting (Telea, Navier-Stokes) given the true
mask. Each checkpoint is also reported composited (its output only inside the mask it found:
by its mask head, or, without one, where it changed the picture; see :mod:`composite`), with
that mask's IoU against the true one. Prediction time is measured separately for the networks: batch
1 latency and batched throughput, after warm-up, with the device synchronised.

Outputs: ``report.json``, ``report.md`` (the paper's Table I shape, then the details) and
``sheet.png`` (masked | each method | clean, fixed samples).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..maskgen.shards import iter_samples
from .checkpoint import pick_device
from .composite import change_mask, composite, predicted_mask_weight
from .data import DataError, decode_pair, find_shards
from .metrics import mae, mask_iou, masked_mae, masked_psnr, masked_ssim, psnr, ssim
from .predict import Predictor, device_name, to_uint8
from .registry import BASELINES

log = logging.getLogger("maskface.eval")

METRICS = ("psnr", "ssim", "psnr_masked", "ssim_masked", "mae", "mae_masked")
INPAINT_RADIUS = 3


@dataclass(frozen=True)
class EvalConfig:
    checkpoints: tuple[str, ...]
    data: str
    out: str
    split: str = "test"
    device: str = "auto"
    batch_size: int = 16
    limit: int | None = None  # pairs evaluated (the first N of the split, in order)
    baselines: tuple[str, ...] = BASELINES
    composite: bool = True
    sheet_rows: int = 16  # one row per mask type met, up to this many
    timing: bool = True
    timing_batch: int | None = None  # default: 64 on CUDA, 16 on the CPU
    labels: tuple[str, ...] = field(default_factory=tuple)


class EvalError(RuntimeError):
    """Evaluation cannot run (no data, bad checkpoint...)."""


def iter_pairs(data: str | Path, split: str, limit: int | None = None
               ) -> Iterator[dict]:
    """Decoded pairs of a split in a fixed order, each with its metadata under ``meta``."""
    shards, _ = find_shards(data, split)
    n = 0
    for shard in shards:
        for raw in iter_samples(shard):
            if limit is not None and n >= limit:
                return
            pair = decode_pair(raw)
            pair["meta"] = json.loads(raw["json"]) if "json" in raw else {}
            pair["meta"].setdefault("key", raw["__key__"])
            yield pair
            n += 1


def _batches(pairs: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for p in pairs:
        batch.append(p)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    a = np.stack(images)
    if a.ndim == 3:
        a = a[..., None]
    return torch.from_numpy(a).to(device).permute(0, 3, 1, 2).float() / 255.0


def inpaint(masked: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """OpenCV inpainting of an RGB uint8 image where ``mask`` > 0 (Telea or Navier-Stokes)."""
    flag = {"telea": cv2.INPAINT_TELEA, "navier-stokes": cv2.INPAINT_NS}[method]
    return cv2.inpaint(masked, (mask > 127).astype(np.uint8), INPAINT_RADIUS, flag)


def sample_metrics(out: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """Per-sample PSNR, SSIM, MAE over the whole image and over the mask (see ``METRICS``)."""
    return {"psnr": psnr(out, clean), "ssim": ssim(out, clean),
            "psnr_masked": masked_psnr(out, clean, mask),
            "ssim_masked": masked_ssim(out, clean, mask),
            "mae": mae(out, clean), "mae_masked": masked_mae(out, clean, mask)}


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if math.isfinite(v)]
    return round(float(np.mean(vals)), 4) if vals else None


def _summary(rows: list[dict]) -> dict:
    """Means over samples; ``samples_masked`` counts those with a masked SSIM (a mask lying
    only in the 5 px border SSIM cannot see has none; those are left out of every masked
    mean, so the masked metrics average the same samples)."""
    has = [r for r in rows if math.isfinite(r["ssim_masked"])]
    out = {k: _mean([r[k] for r in (has if k.endswith("_masked") else rows)])
           for k in METRICS}
    return out | {"samples": len(rows), "samples_masked": len(has)}


def time_network(pred: Predictor, side: int, batch: int, iters: int | None = None) -> dict:
    """Forward-pass time on random inputs already on the device: batch 1 latency (median of
    several runs) and batched throughput, after warm-up, synchronising the device. A refill
    model is timed with both its passes, as on a masked face."""
    dev = pred.device
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def run(x: torch.Tensor, n: int) -> list[float]:
        times = []
        for _ in range(n):
            sync()
            t = time.perf_counter()
            pred.predict(x, both_passes=True)
            sync()
            times.append(time.perf_counter() - t)
        return times

    if cuda:
        torch.backends.cudnn.benchmark = True  # as in training; warm-up runs per shape
    g = torch.Generator().manual_seed(0)
    one = torch.rand(1, 3, side, side, generator=g).to(dev)
    many = torch.rand(batch, 3, side, side, generator=g).to(dev)
    n1 = iters or (50 if cuda else 10)
    run(one, 5 if cuda else 2)
    b1 = float(np.median(run(one, n1)))
    run(many, 3 if cuda else 1)
    nb = max(3, n1 // 5)
    bt = float(np.median(run(many, nb)))
    return {"ms_per_sample_b1": round(b1 * 1000, 3),
            "samples_per_s": round(batch / bt, 1), "timing_batch": batch,
            "device": device_name(dev), "precision": pred.precision,
            "passes": 2 if pred.model.cfg.refill else 1}


def _labels(checkpoints: tuple[str, ...], names: list[str], given: tuple[str, ...]
            ) -> list[str]:
    """Report names: the model's name, with its run directory when two would clash."""
    if given:
        if len(given) != len(checkpoints):
            raise EvalError("give one label per checkpoint")
        clash = [g for g in given if given.count(g) > 1 or g in BASELINES]
        if clash:
            raise EvalError(f"labels must differ from each other and from the baselines: "
                            f"{', '.join(sorted(set(clash)))}")
        return list(given)
    out = []
    for ck, name in zip(checkpoints, names, strict=True):
        if names.count(name) > 1:
            p = Path(ck)
            run = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
            name = f"{name} ({run}/{p.stem})"
        out.append(name)
    if len(set(out)) != len(out):
        out = [f"{n} #{i + 1}" for i, n in enumerate(out)]
    return out


def run_eval(cfg: EvalConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Evaluate; writes report.json, report.md and sheet.png under ``cfg.out``; returns the
    report."""
    device = pick_device(cfg.device)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # inpainting times are per sample on one CPU thread
    try:
        preds = _predictors(cfg)
        pairs, side = _pairs(cfg)
        for p in preds:
            if p.image_size != side:
                log.info("%s was trained on %d px crops; these %d px pairs are resampled to "
                         "%d px for it and its output back", p.label, p.image_size, side,
                         p.image_size)
        tally = _Tally(cfg, preds)
        for batch in _batches(pairs, cfg.batch_size):
            tally.add(batch, _restore(batch, preds, cfg, device, tally))
            if progress is not None:
                progress(len(batch))
        report = tally.report(device, side)
    finally:
        cv2.setNumThreads(threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown_report(report))
    write_sheet(out / "sheet.png", tally.sheet, ["masked", *[m for m in tally.methods
                                                             if m != "masked-input"], "clean"])
    return report


def _predictors(cfg: EvalConfig) -> list[Predictor]:
    """The checkpoints, loaded, with their report names."""
    for b in cfg.baselines:
        if b not in BASELINES:
            raise EvalError(f"unknown baseline {b!r}; known: {', '.join(BASELINES)}")
    preds = [Predictor.load(ck, cfg.device) for ck in cfg.checkpoints]
    labels = _labels(cfg.checkpoints, [p.label for p in preds], cfg.labels)
    for p, label in zip(preds, labels, strict=True):
        p.label = label
    return preds


def _pairs(cfg: EvalConfig) -> tuple[Iterator[dict], int]:
    """The split's pairs (the first one read already, to learn the crop side) and the side."""
    try:
        pairs = iter_pairs(cfg.data, cfg.split, cfg.limit)
        first = next(pairs)
    except DataError as e:
        raise EvalError(str(e)) from e
    except StopIteration:
        raise EvalError(f"{cfg.data}/{cfg.split} holds no pairs") from None
    return itertools.chain([first], pairs), first["clean"].shape[0]


def _restore(batch: list[dict], preds: list[Predictor], cfg: EvalConfig,
             device: torch.device, tally: _Tally) -> dict[str, torch.Tensor]:
    """Every method's output for a batch, as 8-bit-rounded floats (what a user gets)."""
    masked = _tensor([p["masked"] for p in batch], device)
    outputs: dict[str, torch.Tensor] = {}
    for b in cfg.baselines:
        if b == "masked-input":
            outputs[b] = masked
            continue
        done = []
        for p in batch:
            t = time.perf_counter()
            done.append(inpaint(p["masked"], p["mask"], b))
            tally.seconds[b] += time.perf_counter() - t
        outputs[b] = _tensor(done, device)
    for p in preds:
        y = p.predict_at_trained_size(masked)
        image = y[:, :3]
        outputs[p.label] = torch.round(image * 255) / 255
        if not cfg.composite:
            continue
        # With a mask head the model says where the mask is; without, it is guessed from
        # where the output differs from the input.
        w = predicted_mask_weight(y[:, 3:4]) if p.has_mask_head else change_mask(masked, image)
        outputs[f"{p.label} +composite"] = torch.round(composite(masked, image, w) * 255) / 255
        found = y[:, 3:4] if p.has_mask_head else w
        tally.iou[p.label] += mask_iou(found, _tensor([q["mask"] for q in batch], device)
                                       ).tolist()
    return outputs


class _Tally:
    """What an evaluation gathers as batches come: per-sample metrics per method, inpainting
    times, mask IoUs, and the contact sheet's rows (the first sample of each mask type)."""

    def __init__(self, cfg: EvalConfig, preds: list[Predictor]) -> None:
        self.cfg, self.preds = cfg, preds
        self.methods: list[str] = list(cfg.baselines)
        for p in preds:
            self.methods += [p.label] + ([f"{p.label} +composite"] if cfg.composite else [])
        self.rows: dict[str, list[dict]] = {m: [] for m in self.methods}
        self.seconds: dict[str, float] = defaultdict(float)
        self.iou: dict[str, list[float]] = defaultdict(list)
        self.sheet: dict[str, list[np.ndarray]] = defaultdict(list)
        self.sheet_types: set[str] = set()
        self.n = 0

    def add(self, batch: list[dict], outputs: dict[str, torch.Tensor]) -> None:
        device = next(iter(outputs.values())).device
        clean = _tensor([p["clean"] for p in batch], device)
        mask = _tensor([p["mask"] for p in batch], device)
        for name, out in outputs.items():
            vals = {k: v.tolist() for k, v in sample_metrics(out, clean, mask).items()}
            for i, pair in enumerate(batch):
                meta = pair["meta"]
                self.rows[name].append({k: vals[k][i] for k in METRICS}
                                       | {"type": meta.get("type", "?"),
                                          "wear": meta.get("wear", "proper")})
        for i, pair in enumerate(batch):
            t = pair["meta"].get("type", "?")
            if t in self.sheet_types or len(self.sheet_types) >= self.cfg.sheet_rows:
                continue
            self.sheet_types.add(t)
            self.sheet["masked"].append(pair["masked"])
            for name, out in outputs.items():
                if name != "masked-input":
                    self.sheet[name].append(to_uint8(out[i:i + 1])[0])
            self.sheet["clean"].append(pair["clean"])
        self.n += len(batch)

    def report(self, device: torch.device, side: int) -> dict:
        cfg, n = self.cfg, self.n
        report: dict = {"format": "maskface-eval/1", "data": str(cfg.data),
                        "split": cfg.split, "samples": n, "image_size": side,
                        "device": device_name(device), "methods": {}}
        for name in self.methods:
            r = self.rows[name]
            entry = _summary(r) | {
                "per_type": {t: _summary([x for x in r if x["type"] == t])
                             for t in sorted({x["type"] for x in r})},
                "per_wear": {w: _summary([x for x in r if x["wear"] == w])
                             for w in sorted({x["wear"] for x in r})}}
            if name in self.seconds and name != "masked-input":
                ms = 1000 * self.seconds[name] / max(n, 1)
                entry |= {"ms_per_sample_b1": round(ms, 3),
                          "samples_per_s": round(1000 / ms, 1),
                          "timing": "one CPU thread, measured during the run"}
            report["methods"][name] = entry
        for ck, p in zip(cfg.checkpoints, self.preds, strict=True):
            entry = report["methods"][p.label]
            entry |= {"checkpoint": str(ck), "trained_size": p.image_size,
                      "parameters": sum(x.numel() for x in p.model.parameters()),
                      "mask_head": p.has_mask_head}
            if cfg.timing:
                tb = cfg.timing_batch or (64 if p.device.type == "cuda" else 16)
                entry |= time_network(p, p.image_size, tb)  # what one face costs it
                entry["timing"] = "network forward pass only, inputs already on the device"
            if cfg.composite:
                report["methods"][f"{p.label} +composite"] |= {
                    "mask_iou": _mean(self.iou[p.label]),
                    "mask_from": "mask head" if p.has_mask_head else "output change"}
        return report


def fmt(v: float | None, digits: int) -> str:
    """A number for a table; a dash for a value that could not be measured."""
    return "–" if v is None else f"{v:.{digits}f}"


def markdown_report(report: dict) -> str:
    """The report as Markdown: a Table I-style summary, then masked-region, type and wear
    tables."""
    ms = report["methods"]
    lines = [f"# maskface eval: {report['samples']} {report['split']} pairs of "
             f"{report['data']} ({report['image_size']} px)", "",
             f"Device: {report['device']}. SSIM: 11x11 Gaussian window, sigma 1.5, data range 1, "
             "mean over RGB. MAE on a 0-1 scale. *Masked* = over the pixels the mask covers.",
             "", "| Method | SSIM | PSNR (dB) | Prediction time (ms/sample, batch 1) | "
             "Throughput (samples/s) |", "|---|---|---|---|---|"]
    for name, m in ms.items():
        lines.append(f"| {name} | {fmt(m['ssim'], 4)} | {fmt(m['psnr'], 2)} | "
                     f"{fmt(m.get('ms_per_sample_b1'), 2)} | "
                     f"{fmt(m.get('samples_per_s'), 1)} |")
    timed = [m for m in ms.values() if m.get("precision")]
    if timed:
        lines += ["", f"Network times: forward pass only, {timed[0]['device']}, "
                      f"{timed[0]['precision']}, batched at {timed[0]['timing_batch']}. "
                      "Inpainting times: one CPU thread, per sample."]
    lines += ["", "## Whole image and masked region", "",
              "| Method | PSNR | SSIM | MAE | PSNR masked | SSIM masked | MAE masked |",
              "|---|---|---|---|---|---|---|"]
    for name, m in ms.items():
        lines.append(f"| {name} | {fmt(m['psnr'], 2)} | {fmt(m['ssim'], 4)} | "
                     f"{fmt(m['mae'], 4)} | {fmt(m['psnr_masked'], 2)} | "
                     f"{fmt(m['ssim_masked'], 4)} | {fmt(m['mae_masked'], 4)} |")
    iou = {n: m for n, m in ms.items() if "mask_iou" in m}
    if iou:
        lines += ["", "Composite: the output inside the mask the model found (by its mask head, "
                  "or where its output changed the picture), the input elsewhere. Mean IoU of "
                  "that mask with the true one: " + ", ".join(
                      f"{n} {fmt(m['mask_iou'], 3)} ({m['mask_from']})" for n, m in iou.items())
                  + "."]
    for key, title in (("per_type", "mask type"), ("per_wear", "wear style")):
        groups = sorted({g for m in ms.values() for g in m[key]})
        counts = next(iter(ms.values()))[key]
        lines += ["", f"## PSNR / SSIM over the masked region, per {title}", "",
                  "| Method | " + " | ".join(f"{g} ({counts.get(g, {}).get('samples', 0)})"
                                            for g in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        for name, m in ms.items():
            cells = [f"{fmt(m[key].get(g, {}).get('psnr_masked'), 2)} / "
                     f"{fmt(m[key].get(g, {}).get('ssim_masked'), 3)}" for g in groups]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sheet(path: Path, columns: dict[str, list[np.ndarray]], order: list[str]) -> None:
    """A PNG grid: one row per sample, one labelled column per method."""
    order = [c for c in order if columns.get(c)]
    if not order:
        return
    rows = len(columns[order[0]])
    h, w = columns[order[0]][0].shape[:2]
    tile = max(h, 128)
    head = 22
    img = np.full((head + rows * tile, len(order) * tile, 3), 255, np.uint8)
    for j, name in enumerate(order):
        scale = 0.4 * tile / 128
        while scale > 0.25 and cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                               1)[0][0] > tile - 6:
            scale *= 0.9  # long names shrink to fit their column
        cv2.putText(img, name, (j * tile + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for i, a in enumerate(columns[name]):
            if a.shape[0] != tile:
                a = cv2.resize(a, (tile, tile), interpolation=cv2.INTER_CUBIC)
            img[head + i * tile:head + (i + 1) * tile, j * tile:(j + 1) * tile] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
