"""Benchmark the training loader alone: pairs/s out of ShardPairs + DataLoader, and the
per-sample decode cost in one process.

    python bench/loader.py --data DIR                       # workers: as `maskface train`
    python bench/loader.py --data DIR --workers 2 --seconds 20 --batch-size 64

The loader is built as ``maskface train`` builds it (same ShardPairs arguments, batch size,
pin_memory on CUDA, drop_last), with persistent workers, and iterated epoch after epoch (the
epoch set on the dataset each time); the clock starts once every worker has delivered a batch
(the warm-up) and stops after ``--seconds``. Nothing is moved to the device: this is what the
workers supply. ``ms_per_sample`` is one process decoding samples already read from a shard
(``decode_pair`` + ``to_tensors``, half of them flipped, one torch thread as in a worker): a
worker's cost per pair, without tar reading or collation; ``ms_per_sample_dataset`` iterates
the dataset itself in one process (tar reading included, unshuffled).

Also runs against maskface before the uint8 loader (its ShardPairs takes no ``workers=`` and
yields float tensors): the signature decides which API is called. Run it there with that
checkout importable as ``maskface`` (PYTHONPATH) from a directory that does not shadow it;
``maskface_file`` in the output says which code was measured. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import statistics
import time

import torch
from torch.utils.data import DataLoader

import maskface
from maskface.maskgen.shards import iter_samples
from maskface.training import data as mfdata


def default_workers() -> int:
    """The trainer's default where it has one (``train.default_workers``), else 2."""
    try:
        from maskface.training.train import default_workers as dw
    except ImportError:
        return 2
    return dw()


def new_api() -> bool:
    """Whether this maskface's ShardPairs deals to loader workers (the uint8 loader)."""
    return "workers" in inspect.signature(mfdata.ShardPairs).parameters


def make_dataset(data: str, workers: int, shuffle: bool = True
                 ) -> torch.utils.data.IterableDataset:
    """The training set as ``maskface train`` makes it (flip on, no mask head, seed 0)."""
    if new_api():
        return mfdata.ShardPairs(data, "train", shuffle=shuffle, seed=0, flip=True,
                                 with_mask=False, workers=workers)
    return mfdata.ShardPairs(data, "train", shuffle=shuffle, seed=0)


def decode_one(raw: dict, flip: bool) -> dict[str, torch.Tensor]:
    """One sample through a worker's per-sample path, in either API."""
    if new_api():
        return mfdata.to_tensors(mfdata.decode_pair(raw, flip), ("masked", "clean"))
    return mfdata.to_tensors(mfdata.decode_pair(raw), flip)


def decode_cost(shard, samples: int, repeats: int) -> dict:
    """ms per sample of the decode path in this process (best and median pass over the same
    samples held in memory), and the bytes a sample hands to collation."""
    raws = []
    for raw in iter_samples(shard):
        raws.append(raw)
        if len(raws) >= samples:
            break
    rng = random.Random(0)
    flips = [rng.random() < 0.5 for _ in raws]
    for raw, f in zip(raws[:8], flips, strict=False):  # warm caches and OpenCV's first call
        decode_one(raw, f)
    passes = []
    for _ in range(repeats):
        t = time.perf_counter()
        for raw, f in zip(raws, flips, strict=True):
            item = decode_one(raw, f)
        passes.append((time.perf_counter() - t) / len(raws))
    nbytes = sum(v.numel() * v.element_size() for v in item.values())
    return {"ms_per_sample": round(1000 * min(passes), 3),
            "ms_per_sample_median": round(1000 * statistics.median(passes), 3),
            "decode_samples": len(raws), "decode_repeats": repeats,
            "bytes_per_sample": nbytes, "dtype": str(item["masked"].dtype).replace("torch.", "")}


def dataset_cost(data: str, samples: int) -> float:
    """ms per sample iterating the dataset in this process, tar reading included (unshuffled:
    the shuffle buffer would hold the first samples back)."""
    ds = make_dataset(data, 0, shuffle=False)
    t, n = time.perf_counter(), 0
    for _ in ds:
        n += 1
        if n >= samples:
            break
    return round(1000 * (time.perf_counter() - t) / max(n, 1), 3)


def loader_rate(data: str, workers: int, batch: int, seconds: float, pin: bool) -> dict:
    """Pairs/s out of the DataLoader after every worker has delivered (persistent workers)."""
    ds = make_dataset(data, workers)
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, pin_memory=pin, drop_last=True,
                    persistent_workers=workers > 0,
                    prefetch_factor=4 if workers > 0 else None)
    warm_batches = max(workers, 1) * 2
    t_start = time.perf_counter()
    t0 = None
    seen = pairs = epochs = 0
    while True:
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epochs)
        got = 0
        for b in dl:
            got += 1
            seen += 1
            if t0 is None:
                if seen >= warm_batches:
                    t0 = time.perf_counter()
                    warm_s = t0 - t_start
                continue
            pairs += len(b["masked"])
            if time.perf_counter() - t0 >= seconds:
                break
        epochs += 1
        if got == 0:
            raise SystemExit(f"{data}: an epoch gave no batch of {batch}")
        if t0 is not None and time.perf_counter() - t0 >= seconds:
            break
    dt = time.perf_counter() - t0
    del dl
    return {"workers": workers, "batch_size": batch, "pairs": pairs, "seconds": round(dt, 2),
            "pairs_per_s": round(pairs / dt, 1), "warmup_s": round(warm_s, 2),
            "epochs_started": epochs, "persistent_workers": workers > 0, "pin_memory": pin}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="A `maskface generate` output.")
    ap.add_argument("--workers", type=int, default=None,
                    help="Loader workers (default: as `maskface train`).")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0, help="Timed part of the loader run.")
    ap.add_argument("--decode-samples", type=int, default=200)
    ap.add_argument("--decode-repeats", type=int, default=3)
    ap.add_argument("--no-decode", action="store_true", help="Skip the one-process costs.")
    a = ap.parse_args()
    workers = default_workers() if a.workers is None else a.workers
    shards, count = mfdata.find_shards(a.data, "train")
    res = {"bench": "loader", "maskface_file": maskface.__file__,
           "api": "uint8 (workers=)" if new_api() else "float (before the uint8 loader)",
           "data": os.path.abspath(a.data), "train_shards": len(shards), "train_pairs": count,
           "image_size": mfdata.image_size(a.data), "cores": len(os.sched_getaffinity(0)),
           "loadavg_before": [round(x, 2) for x in os.getloadavg()],
           "python": platform.python_version(), "torch": torch.__version__}
    if hasattr(mfdata, "reader_parts"):
        res["shard_parts"] = mfdata.reader_parts(len(shards), workers)
    if not a.no_decode:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a DataLoader worker
        res |= decode_cost(shards[0], a.decode_samples, a.decode_repeats)
        res["ms_per_sample_dataset"] = dataset_cost(a.data, a.decode_samples)
        torch.set_num_threads(threads)
    res |= loader_rate(a.data, workers, a.batch_size, a.seconds, torch.cuda.is_available())
    res["pairs_per_s_per_worker"] = round(res["pairs_per_s"] / max(workers, 1), 1)
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
