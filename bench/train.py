"""Benchmark RA-UNet training throughput (images/s) as ``maskface train`` runs a step.

    python bench/train.py                       # CUDA: the paper's setting beside ours, 256 px
    python bench/train.py --configs fp32-eager-8,bf16-compile-64,bf16-compile-128 --steps 30
    python bench/train.py --device cpu --width 8 --depth 3 --size 64 \\
        --configs fp32-eager-8,bf16-compile-8,bf16-compile-16 --steps 3   # a CPU check

Each configuration is ``PRECISION-MODE-BATCH``: ``fp32-eager-8`` is the paper's setting (fp32,
no compiler, batch 8); ``bf16-compile-64`` ours (bf16 autocast, channels_last, torch.compile).
One run measures all of them, each on a fresh model and optimiser after
``torch._dynamo.reset()``, compiled with ``dynamic=False`` (the one static graph training runs:
its batch size never changes), with ``cudnn.benchmark`` on as in training. The model is what
``maskface train`` builds (``build_model`` defaults: the paper's RA-UNet, 64/5, no BatchNorm).

A step is training's: a uint8 NHWC batch (already on the device: the loader is measured by
bench/loader.py) to float NCHW in [0, 1] (channels_last on the bf16 path), the paper's colour
jitter (``--augment paper``, as training's default), forward under autocast, SSIM + L1, fused
Adam on CUDA. The first step (compiling) is timed apart as ``first_step_s``; then warm-up
steps, then ``--steps`` timed steps (fewer if ``--seconds`` runs out first). ``graphs`` counts
the graphs Dynamo compiled for the configuration: 1 means no recompilation. Prints one JSON
object naming the device.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time

import torch

from maskface.training.augment import jitter_pair
from maskface.training.data import to_device
from maskface.training.losses import ssim_l1
from maskface.training.model import build_model, count_parameters


def parse_config(text: str) -> tuple[str, bool, int]:
    """``fp32-eager-8`` -> ("fp32", False, 8)."""
    try:
        prec, mode, batch = text.split("-")
        assert prec in ("fp32", "bf16") and mode in ("eager", "compile")
        return prec, mode == "compile", int(batch)
    except (ValueError, AssertionError):
        raise SystemExit(f"bad config {text!r}: PRECISION-MODE-BATCH, e.g. bf16-compile-64"
                         ) from None


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_config(text: str, a: argparse.Namespace, device: torch.device) -> dict:
    prec, compile_, batch = parse_config(text)
    fast = prec == "bf16"
    cuda = device.type == "cuda"
    out: dict = {"config": text, "precision": prec, "compile": compile_, "batch": batch}
    torch._dynamo.reset()
    graphs0 = graphs_compiled()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = build_model(a.model, a.width, a.depth, a.norm).to(
        device, memory_format=torch.channels_last if fast else torch.preserve_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cuda)
    net = torch.compile(model, dynamic=False) if compile_ else model
    g = torch.Generator().manual_seed(0)
    raw = {k: torch.randint(0, 256, (batch, a.size, a.size, 3), dtype=torch.uint8, generator=g
                            ).to(device) for k in ("masked", "clean")}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def step(i: int) -> None:
        b = to_device(raw, device, channels_last=fast)
        x, y = b["masked"], b["clean"]
        if a.augment == "paper":
            x, y = jitter_pair([x, y], torch.Generator().manual_seed(i))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            pred = net(x)
        loss = ssim_l1(pred.float()[:, :3], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        t = time.perf_counter()
        step(0)
        sync()
        out["first_step_s"] = round(time.perf_counter() - t, 2)
        for i in range(a.warmup):
            step(1 + i)
        sync()
        t0 = time.perf_counter()
        n = 0
        while n < a.steps and (n < 3 or time.perf_counter() - t0 < a.seconds):
            step(1 + a.warmup + n)
            n += 1
            if n == 3 or n % 10 == 0:
                sync()
        sync()
        dt = time.perf_counter() - t0
        out |= {"steps": n, "images_per_s": round(batch * n / dt, 1),
                "ms_per_step": round(1000 * dt / n, 2)}
        if cuda:
            out["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    except torch.OutOfMemoryError:
        out["error"] = "out of memory"
    except Exception as e:  # noqa: BLE001 - one failed configuration should not lose the others
        out["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    out["graphs"] = graphs_compiled() - graphs0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--configs", default=None,
                    help="Comma list of PRECISION-MODE-BATCH (default on CUDA: "
                         "fp32-eager-8,bf16-compile-64,bf16-compile-128; on the CPU: "
                         "fp32-eager-8).")
    ap.add_argument("--steps", type=int, default=None, help="Timed steps (30 CUDA, 3 CPU).")
    ap.add_argument("--warmup", type=int, default=None, help="Untimed steps after the first.")
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="Stop timing a configuration after this long (at least 3 steps).")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--model", default="ra-unet")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--norm", default="none")
    ap.add_argument("--augment", default="paper", choices=["paper", "none"],
                    help="The paper's colour jitter in the step, as training's default.")
    a = ap.parse_args()
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if a.device == "auto" else a.device))
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.set_device(dev)
    torch.backends.cudnn.benchmark = True  # as maskface train does on CUDA
    a.steps = a.steps or (30 if cuda else 3)
    a.warmup = a.warmup if a.warmup is not None else (5 if cuda else 1)
    configs = (a.configs or ("fp32-eager-8,bf16-compile-64,bf16-compile-128" if cuda
                             else "fp32-eager-8")).split(",")
    runs = []
    for c in configs:
        runs.append(run_config(c, a, dev))
        gc.collect()  # the configuration's model, optimiser and graphs go before the next
        if cuda:
            torch.cuda.empty_cache()
        print(json.dumps(runs[-1]), flush=True, file=sys.stderr)
    ok = [r for r in runs if "images_per_s" in r]
    paper = next((r for r in ok if r["precision"] == "fp32" and not r["compile"]), None)
    ours = max((r for r in ok if r["precision"] == "bf16"), key=lambda r: r["images_per_s"],
               default=None)
    result = {
        "bench": "train",
        "device": torch.cuda.get_device_name(dev) if cuda else
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "python": platform.python_version(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "image_size": a.size, "augment": a.augment,
        "model": {"name": a.model, "width": a.width, "depth": a.depth, "norm": a.norm,
                  "parameters": count_parameters(build_model(a.model, a.width, a.depth,
                                                             a.norm))},
        "paper_setting": paper, "ours_best": ours,
        "speedup": round(ours["images_per_s"] / paper["images_per_s"], 2)
        if paper and ours else None,
        "runs": runs,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
