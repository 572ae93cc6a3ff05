"""Benchmark RA-UNet training throughput (images/s at 256x256) and, optionally, shard decoding.

    python bench/train.py                     # CUDA when present, else CPU (small)
    python bench/train.py --device cuda --batches 8,32,64,128 --steps 30
    python bench/train.py --data OUT --workers 8   # also: decoded pairs/s from shards

Configurations: the paper's setting (fp32, eager, batch 8; fused Adam on CUDA in both) and our
default CUDA path (bf16 autocast, channels_last, torch.compile) at each batch size; the best is
reported. On a CPU both are the same fp32 eager step, so only batch size differs.
Synthetic inputs isolate the step from I/O; the loader is measured on its own. Prints one JSON
object naming the device.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from maskface.training.losses import ssim_l1
from maskface.training.model import build_model, count_parameters


def step_rate(device: torch.device, batch: int, size: int, steps: int, fast: bool,
              compile_: bool, width: int, depth: int) -> dict:
    torch.manual_seed(0)
    model = build_model("ra-unet", width, depth).to(device)
    cuda = device.type == "cuda"
    if fast and cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cuda)
    net = torch.compile(model) if compile_ else model
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.rand(batch, 3, size, size, device=device)
    if fast and cuda:
        x = x.contiguous(memory_format=torch.channels_last)

    def one() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast and cuda):
            p = net(x)
        loss = ssim_l1(p.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    warm = 5 if compile_ else 2
    for _ in range(warm):
        one()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {"batch": batch, "fast": fast, "compile": compile_,
           "images_per_s": round(batch * steps / dt, 1), "ms_per_step": round(1000 * dt / steps, 2)}
    if cuda:
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return out


def loader_rate(data: str, workers: int, batch: int, limit: int) -> dict:
    from torch.utils.data import DataLoader

    from maskface.training.data import ShardPairs

    ds = ShardPairs(data, "train")
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, drop_last=True)
    n, t0 = 0, None
    for i, b in enumerate(dl):
        if i == 2:
            t0, n = time.perf_counter(), 0  # after the workers have started
            continue
        n += len(b["masked"])
        if n >= limit and t0 is not None:
            break
    dt = time.perf_counter() - (t0 or time.perf_counter())
    return {"workers": workers, "pairs_per_s": round(n / dt, 1) if dt > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", default=None, help="Comma list (default: 8,32,64 on CUDA).")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--data", default=None, help="Shards to measure the loader on.")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    cuda = dev.type == "cuda"
    steps = args.steps or (30 if cuda else 3)
    batches = [int(b) for b in (args.batches or ("8,32,64" if cuda else "8")).split(",")]
    runs = [step_rate(dev, 8, args.size, steps, False, False, args.width, args.depth)]
    for b in batches:
        runs.append(step_rate(dev, b, args.size, steps, True, cuda and not args.no_compile,
                              args.width, args.depth))
    best = max(runs[1:], key=lambda r: r["images_per_s"])
    result = {
        "bench": "train", "device": torch.cuda.get_device_name(dev) if cuda else
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "image_size": args.size,
        "model": {"name": "ra-unet", "width": args.width, "depth": args.depth,
                  "parameters": count_parameters(build_model("ra-unet", args.width, args.depth))},
        "paper_setting_fp32_eager_b8": runs[0], "default_path_best": best, "runs": runs,
        "speedup": round(best["images_per_s"] / runs[0]["images_per_s"], 2),
    }
    if args.data:
        result["loader"] = loader_rate(args.data, args.workers, 32, 2000)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
