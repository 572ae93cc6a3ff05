"""The training losses: the paper's ``ssim_l1``, the mask head's, and L1 over the mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import ssim


def ssim_l1(pred: torch.Tensor, target: torch.Tensor, l1_weight: float = 1.0,
            kind: str = "l1") -> torch.Tensor:
    """The paper's loss: (1 - SSIM) + w * L1. Its code used MSE for the second term;
    ``kind="mse"`` gives that."""
    if kind not in ("l1", "mse"):
        raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
    pixel = F.l1_loss(pred, target) if kind == "l1" else F.mse_loss(pred, target)
    return (1 - ssim(pred, target).mean()) + l1_weight * pixel


def mask_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """The mask head's loss: binary cross-entropy plus soft Dice (1 - 2|P∩T| / (|P| + |T|)),
    per image, so a small mask weighs as much as a large one."""
    prob = prob.float().clamp(1e-6, 1 - 1e-6)
    target = target.float()
    bce = F.binary_cross_entropy(prob, target)
    inter = (prob * target).sum(dim=(1, 2, 3))
    union = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + eps) / (union + eps)
    return bce + dice.mean()


def hole_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over each image's masked pixels, averaged over the images that have
    any (a bare face adds nothing): the region a mask-head model's output is used in."""
    w = (mask > 0.5).float()
    area = w.sum(dim=(1, 2, 3))
    err = ((pred - target).abs().mean(dim=1, keepdim=True) * w).sum(dim=(1, 2, 3))
    has = area > 0
    if not bool(has.any()):
        return pred.sum() * 0
    return (err[has] / area[has]).mean()
