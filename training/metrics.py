"""Image-quality measures: PSNR, SSIM and MAE, over whole images or a masked region.

SSIM follows Wang et al. as scikit-image computes it with ``gaussian_weights=True``: an 11x11
Gaussian window with sigma 1.5, data range 1, K1 = 0.01, K2 = 0.03, sample covariance, averaged
over pixels whose window lies inside the image and over the RGB channels. The masked variants
average the same per-pixel values over the pixels a mask covers, so a method is judged where it
had to invent content, not on the untouched rest of the face.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
# The valid SSIM map loses this many pixels on each side.
SSIM_BORDER = WINDOW // 2


@functools.lru_cache(maxsize=8)
def _window(device: str, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(WINDOW, dtype=torch.float64) - WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, 'valid' (no padding), per channel."""
    c = x.shape[1]
    g = _window(str(x.device), x.dtype)
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, WINDOW), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, WINDOW, 1), groups=c)


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM (N, C, H-10, W-10) of images in [0, data_range]."""
    a, b = a.float(), b.float()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = WINDOW * WINDOW
    cov = n / (n - 1)  # sample covariance, as scikit-image uses
    mu_a, mu_b = _blur(a), _blur(b)
    va = cov * (_blur(a * a) - mu_a**2)
    vb = cov * (_blur(b * b) - mu_b**2)
    vab = cov * (_blur(a * b) - mu_a * mu_b)
    return ((2 * mu_a * mu_b + c1) * (2 * vab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image (N,)."""
    return ssim_map(a, b, data_range).mean(dim=(1, 2, 3))


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image (N,), in dB."""
    mse = ((a.float() - b.float()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(data_range**2 / mse)


def _masked_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (N, C, H, W) over the pixels where ``w`` (N, 1, H, W) is set, per image;
    NaN for an image whose mask is empty."""
    w = w.expand_as(x)
    return (x * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
                data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image over the pixels where ``mask`` (N, 1, H, W) > 0.5."""
    w = (mask > 0.5).float()
    mse = _masked_mean((a.float() - b.float()) ** 2, w).clamp_min(1e-12)
    return 10 * torch.log10(data_range**2 / mse)


def masked_ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
                data_range: float = 1.0) -> torch.Tensor:
    """Mean of the SSIM map over masked pixels (those whose window centre is in the mask)."""
    s = SSIM_BORDER
    w = (mask[:, :, s:-s, s:-s] > 0.5).float()
    return _masked_mean(ssim_map(a, b, data_range), w)


def mae(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (N,), in the images' own scale."""
    return (a.float() - b.float()).abs().mean(dim=(1, 2, 3))


def masked_mae(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image over the pixels where ``mask`` > 0.5."""
    return _masked_mean((a.float() - b.float()).abs(), (mask > 0.5).float())


def mask_iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union per image (N,) of two masks (N, 1, H, W), each thresholded;
    1 where both are empty."""
    p, t = pred > threshold, target > 0.5
    inter = (p & t).sum(dim=(1, 2, 3)).float()
    union = (p | t).sum(dim=(1, 2, 3)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
