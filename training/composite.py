"""Keep the original pixels where nothing needed restoring.

The network rewrites the whole crop, and even a good model blurs skin, hair and background a
little. Compositing takes its output only where it changed the picture clearly (the mask, as
the model sees it), with a feathered edge, and the input everywhere else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Mean absolute RGB change (0..1) above which a pixel counts as restored. A trained model
# changes unmasked skin by ~0.01-0.04 and a mask by ~0.1-0.5.
CHANGE_THRESHOLD = 0.08


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


def composite(inp: torch.Tensor, out: torch.Tensor, weight: torch.Tensor | None = None
              ) -> torch.Tensor:
    """The output where ``weight`` (default :func:`change_mask`) says so, the input elsewhere."""
    if weight is None:
        weight = change_mask(inp, out)
    return weight * out.float() + (1 - weight) * inp.float()
