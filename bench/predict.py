"""Benchmark prediction time: batch-1 latency and batched throughput of a restoration network.

    python bench/predict.py                          # the paper's RA-UNet (64/5) at 256 px
    python bench/predict.py --device cuda --batch 64 --compile
    python bench/predict.py --checkpoint RUN/checkpoints/best.pt   # at its trained size

Without --checkpoint the weights are random (time does not depend on them). Forward pass only,
inputs already on the device, after warm-up, the device synchronised around each run; the
same measurement ``maskface eval`` reports. ``cudnn.benchmark`` is on, as in training. With
``--compile``: ``torch._dynamo.reset()`` first and ``dynamic=False``, so batch 1 and the batch
each run a static graph of their own (``graphs``: 2; the second shape recompiles once, where
the default would fall back to a dynamic-shape graph). Prints one JSON object naming the
device.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from maskface.training.checkpoint import pick_device
from maskface.training.evaluate import time_network
from maskface.training.model import build_model, count_parameters
from maskface.training.predict import Predictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--model", default="ra-unet")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--size", type=int, default=None,
                    help="crop side (default: the checkpoint's, else 256)")
    ap.add_argument("--batch", type=int, default=None, help="default 64 on CUDA, 16 on CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--iters", type=int, default=None)
    a = ap.parse_args()
    dev = pick_device(a.device)
    if a.checkpoint:
        pred = Predictor.load(a.checkpoint, a.device, a.precision)
    else:
        pred = Predictor.on_device(build_model(a.model, a.width, a.depth), dev, a.precision,
                                   a.size or 256, a.model)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if a.compile:
        torch._dynamo.reset()
        pred.model = torch.compile(pred.model, dynamic=False)
    batch = a.batch or (64 if dev.type == "cuda" else 16)
    size = a.size or pred.image_size
    from torch._dynamo.utils import counters

    graphs0 = counters["stats"]["unique_graphs"]
    res = time_network(pred, size, batch, a.iters)
    if a.compile:
        res["graphs"] = counters["stats"]["unique_graphs"] - graphs0
    print(json.dumps({"bench": "predict", "model": pred.label,
                      "parameters": count_parameters(pred.model), "size": size,
                      "compiled": a.compile, "torch": torch.__version__,
                      "python": platform.python_version(), **res}))


if __name__ == "__main__":
    main()
