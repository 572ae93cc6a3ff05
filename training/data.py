"""Training pairs from maskgen shards: masked image in, clean image out, mask alongside.

Samples leave the workers as uint8 HWC arrays (a quarter of float32's bytes through shared
memory and pinning); scaling, colour jitter and the channels_last layout happen on the device
(``augment.py``). Flips are done in the workers on the whole pair (``cv2.flip``).

Dealing: shards are shuffled per epoch; when there are fewer shards than loader workers, each
shard is cut into parts (sample ``i`` belongs to part ``i % parts``), so no worker sits idle.
Inside a part, samples are dealt to DDP ranks by position, so every rank sees a disjoint share
and no sample is seen twice in an epoch. A small per-worker buffer shuffles samples further.
Everything is seeded from (seed, epoch, rank, worker), so an epoch's order can be replayed on
resume. The epoch lives in shared memory, so persistent workers see ``set_epoch``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..maskgen.shards import ShardError, iter_samples


class DataError(ValueError):
    """Training data that cannot be used (missing, empty, unreadable)."""


def find_shards(root: str | Path, split: str) -> tuple[list[Path], int]:
    """The shards of a split and how many pairs they hold (from manifest.json when present)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no data directory {root} (make one with `maskface generate`)")
    manifest = root / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        sp = m.get("splits", {}).get(split)
        if not sp:
            raise DataError(f"{root} has no {split!r} split (it has: "
                            f"{', '.join(m.get('splits', {})) or 'none'})")
        shards = [root / s["path"] for s in sp["shards"] if s["pairs"] > 0]
        count = sum(s["pairs"] for s in sp["shards"])
    else:
        shards = sorted((root / split).glob("*.tar"))
        count = -1
    if not shards or count == 0:
        raise DataError(f"{root}/{split} holds no training pairs")
    return shards, count


def image_size(root: str | Path) -> int | None:
    """The side of the aligned crops a generate run wrote (from manifest.json), if known."""
    manifest = Path(root) / "manifest.json"
    if not manifest.exists():
        return None
    size = json.loads(manifest.read_text()).get("config", {}).get("size")
    return int(size) if size else None


def _image(sample: dict, name: str, flags: int) -> np.ndarray:
    for e in (f"{name}.jpg", f"{name}.png"):
        if e in sample:
            a = cv2.imdecode(np.frombuffer(sample[e], np.uint8), flags)
            if a is None:
                raise ShardError(f"sample {sample['__key__']}: {e} does not decode")
            return a
    raise ShardError(f"sample {sample['__key__']} has no {name} image")


def _rgb(sample: dict, name: str) -> np.ndarray:
    if _IMREAD_RGB is not None:  # decoded straight to RGB (OpenCV >= 4.11)
        return _image(sample, name, _IMREAD_RGB)
    return cv2.cvtColor(_image(sample, name, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_pair(sample: dict, flip: bool = False) -> dict[str, np.ndarray]:
    """(masked, clean, mask) as uint8 arrays, RGB HWC and HW; with ``flip``, the whole pair
    mirrored left-right. Outside the mask the input is the clean image, so JPEG noise does not
    make the two differ where nothing was masked."""
    clean = _rgb(sample, "clean")
    masked = _rgb(sample, "masked")
    mask = _image(sample, "mask", cv2.IMREAD_GRAYSCALE)
    if masked.shape != clean.shape or mask.shape != clean.shape[:2]:
        raise ShardError(f"sample {sample['__key__']}: masked, clean and mask differ in size")
    masked = cv2.copyTo(masked, mask, clean.copy())  # masked where mask > 0, else clean
    if flip:
        masked, clean, mask = cv2.flip(masked, 1), cv2.flip(clean, 1), cv2.flip(mask, 1)
    return {"masked": masked, "clean": clean, "mask": mask}


def to_tensors(pair: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """uint8 tensors, images HWC and the mask HW1, without copies."""
    out = {}
    for k in keys:
        a = pair[k] if pair[k].ndim == 3 else pair[k][..., None]
        out[k] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False,
              ) -> dict[str, torch.Tensor]:
    """A loader batch on ``device`` as float NCHW in [0, 1]. The division happens there, so
    only uint8 crosses to the device; the NHWC batch permuted is already channels_last."""
    out = {}
    for k, v in batch.items():
        x = v.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        out[k] = x if channels_last else x.contiguous()
    return out


def reader_parts(shards: int, workers: int) -> int:
    """Into how many parts each shard is cut so that every loader worker has one to read."""
    return max(1, -(-max(workers, 1) // max(shards, 1)))


class ShardPairs(IterableDataset):
    """An iterable of ``{"masked", "clean"[, "mask"]}`` uint8 tensors from a split's shards.

    ``flip``: mirror half the pairs at random. ``with_mask``: yield the binary mask too (the
    mask head learns from it). ``workers``: the DataLoader's ``num_workers``; it decides how
    finely shards are dealt (pass the same value to the loader)."""

    def __init__(self, root: str | Path, split: str = "train", *, shuffle: bool = True,
                 flip: bool = True, with_mask: bool = False, buffer: int = 256, seed: int = 0,
                 rank: int = 0, world: int = 1, workers: int = 0) -> None:
        self.shards, self.count = find_shards(root, split)
        self.shuffle, self.flip, self.buffer = shuffle, flip, buffer
        self.keys = ("masked", "clean", "mask") if with_mask else ("masked", "clean")
        self.seed, self.rank, self.world = seed, rank, world
        self.parts = reader_parts(len(self.shards), workers)
        # Shared memory: persistent loader workers read the epoch the trainer sets.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def readings(self) -> list[tuple[Path, int]]:
        """The epoch's (shard, part) list in reading order, before dealing to workers."""
        order = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}-{self.epoch}").shuffle(order)
        return [(s, p) for s in order for p in range(self.parts)]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{wid}")
        buf: list[dict] = []
        for shard, part in self.readings()[wid::nw]:
            # Counts and structure are checked on every pass; the sha256 (a third of the
            # reading) is `maskface verify`'s, not every epoch's and every part's.
            for i, raw in enumerate(iter_samples(shard, sha256=False)):
                if i % self.parts != part or (i // self.parts) % self.world != self.rank:
                    continue
                item = to_tensors(decode_pair(raw, self.flip and rng.random() < 0.5),
                                  self.keys)
                if not self.shuffle:
                    yield item
                    continue
                buf.append(item)
                if len(buf) >= self.buffer:
                    yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf
