"""Restoring in two passes: find the mask, erase it to flat grey, paint a face into the hole.

A network that sees the mask it restores copies some of it into its output: on real photos
the lower half of a white mask, the red of a red one or the green of an N95 came through,
blurred, where the face should be. A model trained with ``--erase-fraction`` has also seen
pairs whose mask (grown a little) was erased to flat grey, the grey that stands for "no photo
here" beyond a photo's edge, and learnt to paint a face into that hole. Such a model
(``UNetConfig.refill``) restores in two passes: the first finds the mask with the mask head;
the region the blend takes (the mask grown as :func:`.composite.predicted_mask_weight` grows
it) is erased; the second paints the face with nothing of the mask left to copy. The mask
estimate stays the first pass's, so the blend is the same as with one pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..maskgen.align import OUTSIDE_GREY
from .composite import MASK_GROW, predicted_mask_weight

# The hole's fill: the grey that unmask and the generator put beyond a photo's edge, so one
# value means "paint what belongs here". Measured, that sharing is a weakness: the second pass
# painted grey where a hole met the grey beyond a tight photo (docs/results.md).
ERASE_GREY = OUTSIDE_GREY / 255
# Training erases the true mask grown by a random share of the side in this range: around the
# growth at inference (MASK_GROW twice: the blend's growth and its feather), and the mask
# head's own errors either side of it.
ERASE_GROW = (MASK_GROW, 3 * MASK_GROW)


def inference_hole(prob: torch.Tensor) -> torch.Tensor:
    """Where the second pass paints: (N, 1, H, W) bool, the pixels the blend takes at least
    half from the restored crop (none on an image whose mask head found no mask)."""
    return predicted_mask_weight(prob) >= 0.5


def erase(x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """``x`` (N, 3, H, W) with ``hole`` (N, 1, H, W bool) set to ERASE_GREY."""
    return torch.where(hole, torch.full_like(x, ERASE_GREY), x)


def two_pass(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             always: bool = False) -> torch.Tensor:
    """A refill model's output for a float batch in [0, 1]: the second pass's RGB where the
    first pass found a mask (its own RGB elsewhere), and the first pass's mask estimate. Only
    images with a mask are run twice (``always``: every image, for timing a masked face)."""
    y = net(x).float().clamp(0, 1)
    hole = inference_hole(y[:, 3:4])
    again = hole.flatten(1).any(dim=1) | always
    if not again.any():
        return y
    y = y.clone()
    y2 = net(erase(x[again], hole[again])).float().clamp(0, 1)
    y[again, :3] = y2[:, :3]
    return y


class BothPasses(torch.nn.Module):
    """A refill model's two passes as one graph without branches, for export: both passes run
    on every image. An image whose first pass found no mask has nothing erased, so its second
    pass is its first, and the output equals :func:`two_pass`'s."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        y2 = self.net(erase(x, inference_hole(y[:, 3:4])))
        return torch.cat([y2[:, :3], y[:, 3:4]], dim=1)


def erase_masks(x: torch.Tensor, mask: torch.Tensor, fraction: float,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The training side: each pair's input, with probability ``fraction``, with its true
    mask (N, 1, H, W in [0, 1]) grown by a random share of the side in ERASE_GROW erased to
    ERASE_GREY; returns the batch and which pairs were erased ((N,) bool; a pair without a
    mask is not). The target and the true mask stay as they were."""
    n, side = x.shape[0], min(x.shape[-2:])
    pick = torch.rand(n, generator=g) < fraction
    grow = torch.empty(n).uniform_(*ERASE_GROW, generator=g)
    hard = mask > 0.5
    pick &= hard.flatten(1).any(dim=1).cpu()
    out = x.clone()
    for i in torch.nonzero(pick).flatten().tolist():
        r = max(1, round(float(grow[i]) * side))
        hole = F.max_pool2d(hard[i:i + 1].float(), 2 * r + 1, stride=1, padding=r) > 0
        out[i:i + 1] = erase(x[i:i + 1], hole)
    return out, pick.to(x.device)
