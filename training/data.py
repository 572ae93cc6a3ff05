"""Training pairs from maskgen shards: masked image in, clean image out, mask alongside.

Shards are shuffled per epoch and dealt to DataLoader workers; inside a shard, samples are dealt
to DDP ranks by position, so every rank sees a disjoint share and no sample is seen twice in an
epoch. A small buffer shuffles samples further. Flips apply to the whole pair. Everything is
seeded from (seed, epoch, rank, worker), so an epoch's order can be replayed on resume.
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


def decode_pair(sample: dict) -> dict[str, np.ndarray]:
    """(masked, clean, mask) as uint8 arrays; outside the mask the input is the clean image,
    so JPEG noise does not make the two differ where nothing was masked."""
    def img(ext: str, flags: int) -> np.ndarray:
        for e in (f"{ext}.jpg", f"{ext}.png"):
            if e in sample:
                a = cv2.imdecode(np.frombuffer(sample[e], np.uint8), flags)
                if a is None:
                    raise ShardError(f"sample {sample['__key__']}: {e} does not decode")
                return a
        raise ShardError(f"sample {sample['__key__']} has no {ext} image")

    clean = cv2.cvtColor(img("clean", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    masked = cv2.cvtColor(img("masked", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mask = img("mask", cv2.IMREAD_GRAYSCALE)
    masked = np.where(mask[..., None] > 0, masked, clean)
    return {"masked": masked, "clean": clean, "mask": mask}


def to_tensors(pair: dict[str, np.ndarray], flip: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k in ("masked", "clean"):
        a = pair[k][:, ::-1] if flip else pair[k]
        out[k] = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0
    m = pair["mask"][:, ::-1] if flip else pair["mask"]
    out["mask"] = torch.from_numpy(np.ascontiguousarray(m))[None].float() / 255.0
    return out


class ShardPairs(IterableDataset):
    """An iterable of ``{"masked", "clean", "mask"}`` float tensors from a split's shards."""

    def __init__(self, root: str | Path, split: str = "train", *, shuffle: bool = True,
                 flip: bool = True, buffer: int = 256, seed: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.shards, self.count = find_shards(root, split)
        self.shuffle, self.flip, self.buffer = shuffle, flip, buffer
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{wid}")
        order = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}-{self.epoch}").shuffle(order)
        buf: list[dict] = []
        for shard in order[wid::nw]:
            for i, raw in enumerate(iter_samples(shard)):
                if i % self.world != self.rank:
                    continue
                item = to_tensors(decode_pair(raw),
                                  self.flip and rng.random() < 0.5)
                if not self.shuffle:
                    yield item
                    continue
                buf.append(item)
                if len(buf) >= self.buffer:
                    yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf
