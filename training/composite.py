"""Keep the original pixels where nothing needed restoring.

The network rewrites the whole crop, and even a good model blurs skin, hair and background a
little. Compositing takes its output only where the mask is, with a feathered edge, and the
input everywhere else. A model with a mask head says where the mask is
(:func:`predicted_mask_weight`); for one without, the mask is guessed from where the output
differs clearly from the input (:func:`change_mask`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Mean absolute RGB change (0..1) above which a pixel counts as restored. A trained model
# changes unmasked skin by ~0.01-0.04 and a mask by ~0.1-0.5.
CHANGE_THRESHOLD = 0.08
# A mask head's mask is grown by this much of the crop side before the seam (real masks' soft
# edges, straps near the cheeks) and feathered over as much again. `eval` and `unmask` blend
# alike, so eval's composited figures are what `unmask` does to a face.
MASK_GROW = 0.03
# A mask head's finding smaller than this share of the crop is not a mask: 99 % of generated
# masks cover more than 4 % (under-chin ones; worn properly, more than 13 %), while a bare
# face's white teeth or a collar's edge can light up 2 %.
MIN_MASK_AREA = 0.03


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, stride=1, padding=k // 2)


def _blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


def change_mask(inp: torch.Tensor, out: torch.Tensor, threshold: float = CHANGE_THRESHOLD
                ) -> torch.Tensor:
    """Where the model restored something: a (N, 1, H, W) weight in [0, 1].

    The per-pixel change is smoothed (so JPEG noise and single pixels do not count), holes are
    closed (a mask with skin-coloured patches is still one mask), the region grows by a few
    pixels (mask edges are soft) and the edge is feathered. Sizes scale with the image side.
    """
    side = min(inp.shape[-2:])
    k = max(3, (side // 64) | 1)  # 3 px at 128, 5 at 256
    d = (out.float() - inp.float()).abs().mean(1, keepdim=True)
    hard = (_blur(d, k) > threshold).float()
    close = 4 * k + 1
    hard = 1 - _dilate(1 - _dilate(hard, close), close)  # dilate then erode: fill holes
    return _blur(_dilate(hard, 2 * k + 1), 2 * k + 1)


def predicted_mask_weight(prob: torch.Tensor, grow: float = MASK_GROW,
                          feather: float = MASK_GROW, min_area: float = MIN_MASK_AREA
                          ) -> torch.Tensor:
    """A blend weight (N, 1, H, W) from a mask head's output: 1 over the predicted mask
    (probability > 0.5) grown by ``grow`` of the side, fading linearly to 0 over twice
    ``feather`` beyond that; exactly 0 where no mask is near, so those pixels keep their
    values, and 0 everywhere on an image whose mask covers less than ``min_area`` of it."""
    # Crops are square; the height, so that an exported graph (whose sizes are fixed at the
    # crop side it was traced at) grows a wider input's mask as PyTorch does.
    side = int(prob.shape[-2])
    g = max(1, round(grow * side))
    f = max(1, round(feather * side))
    hard = (prob.float() > 0.5).float()
    hard = hard * (hard.mean(dim=(1, 2, 3), keepdim=True) >= min_area)
    # Grown by g + f, then box-blurred over 2f + 1: weight 1 up to g past the edge, 0 beyond.
    return _blur(_dilate(hard, 2 * (g + f) + 1), 2 * f + 1).clamp_(0, 1)


def composite(inp: torch.Tensor, out: torch.Tensor, weight: torch.Tensor | None = None
              ) -> torch.Tensor:
    """The output where ``weight`` (default :func:`change_mask`) says so, the input elsewhere."""
    if weight is None:
        weight = change_mask(inp, out)
    return weight * out.float() + (1 - weight) * inp.float()
