"""Restoration when the mask shows nothing of the face: test pairs with their masks made opaque.

    python bench/opaque_masks.py --data DATA [--split test] [--batches 20] MODEL [MODEL ...]

A rendered mask is shaded by the face under it, so on generated pairs a model can read the
face through the mask; a real mask shows its own shape. This takes the split's pairs in order
and, beside each batch as generated, the same batch with every mask made opaque as
``maskface train --mask-texture`` makes it (``training.augment.texture_masks``, seeded by the
batch's index, so every model sees the same pairs). Per model (a checkpoint or .safetensors
with a mask head; ``bundled`` for the bundled file) it prints, in one JSON object, the masked
PSNR of the output composited by the model's own mask on both kinds of pair, and the mask
head's IoU with the true mask on the opaque ones, scored in 8 bits as ``maskface eval`` scores
(its masked figure "composited" is the plain column's). fp32 on the CPU unless ``--device``
says.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.data import DataLoader

from maskface.training.augment import texture_masks
from maskface.training.checkpoint import DEFAULT_MODEL
from maskface.training.composite import composite, predicted_mask_weight
from maskface.training.data import ShardPairs, to_device
from maskface.training.metrics import mask_iou, masked_psnr
from maskface.training.predict import Predictor


def _eight_bit(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 255) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    paths = [str(DEFAULT_MODEL) if m == "bundled" else m for m in args.models]
    preds = [Predictor.load(p, args.device, "fp32") for p in paths]
    for m, p in zip(args.models, preds, strict=True):
        if not p.has_mask_head:
            raise SystemExit(f"{m}: no mask head; this measures mask-head models")
    pairs = ShardPairs(args.data, args.split, with_mask=True, shuffle=False, flip=False)
    sums = {m: {"plain": 0.0, "opaque": 0.0, "iou_opaque": 0.0} for m in args.models}
    n = 0
    for k, b in enumerate(DataLoader(pairs, batch_size=args.batch_size)):
        if k >= args.batches:
            break
        b = to_device(b, preds[0].device)
        x, y, mask = b["masked"], b["clean"], b["mask"]
        # In 8 bits, as a photo is: the opaque input, and the output as `eval` scores it.
        opaque = _eight_bit(texture_masks(x, mask, 1.0, torch.Generator().manual_seed(k)))
        n += x.shape[0]
        for m, p in zip(args.models, preds, strict=True):
            for tag, inp in (("plain", x), ("opaque", opaque)):
                out = p.predict(inp)  # the path eval and unmask take (a refill model: 2 passes)
                restored = _eight_bit(composite(inp, out[:, :3],
                                                predicted_mask_weight(out[:, 3:4])))
                sums[m][tag] += float(masked_psnr(restored, y, mask).sum())
                if tag == "opaque":
                    sums[m]["iou_opaque"] += float(mask_iou(out[:, 3:4], mask).sum())
    print(json.dumps({"bench": "opaque_masks", "data": args.data, "split": args.split,
                      "pairs": n, "psnr_masked_composited": {
                          m: {k: round(v / max(n, 1), 3) for k, v in s.items()}
                          for m, s in sums.items()}}, indent=1))


if __name__ == "__main__":
    main()
