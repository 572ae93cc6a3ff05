"""Colour augmentation on the device, the same for both images of a pair.

``paper``: the paper's training augmentation, a random flip (done by the loader's workers) and
its colour jitter, in its order: hue +-0.05 of a turn, saturation x[0.2, 1.3], brightness +-0.1,
contrast x[0.2, 1.5]. Saturation blends with the grey image and hue rotates the chroma plane
of YIQ, the usual tensor forms of the HSV operations the paper's TensorFlow code used.
``flip``: the flip only. ``none``: neither.

Beside these, options of their own (``--mask-texture``, ``--mask-recolour``, ``--mask-rim``,
``--grey-fraction``) widen what a mask and a photo look like: a mask of its own shading and
folds, a recoloured mask region (input only), a rim around the mask (input, and the mask the
head learns) and grey pairs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import AUGMENTS  # noqa: F401 - the names this module implements

HUE, SATURATION, BRIGHTNESS, CONTRAST = 0.05, (0.2, 1.3), 0.1, (0.2, 1.5)

_GREY = (0.299, 0.587, 0.114)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, 1, 1, 1, generator=g) * (hi - lo) + lo).to(device)


def _hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``turns`` of a full turn (per image), in YIQ."""
    m = _RGB2YIQ.to(x.device, x.dtype)
    yiq = torch.einsum("ij,njhw->nihw", m, x)
    a = (2 * math.pi * turns).view(-1)
    c, s = torch.cos(a).view(-1, 1, 1), torch.sin(a).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], 1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), yiq)


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = _GREY
    return (r * x[:, 0] + g * x[:, 1] + b * x[:, 2]).unsqueeze(1)


def jitter_pair(pair: list[torch.Tensor], g: torch.Generator) -> list[torch.Tensor]:
    """The paper's colour jitter with one random draw per sample, applied to every tensor of
    ``pair`` (float NCHW in [0, 1]; each of them gets the same change)."""
    n, dev = pair[0].shape[0], pair[0].device
    hue = _uniform(n, -HUE, HUE, g, dev)
    sat = _uniform(n, *SATURATION, g, dev)
    bri = _uniform(n, -BRIGHTNESS, BRIGHTNESS, g, dev)
    con = _uniform(n, *CONTRAST, g, dev)
    out = []
    for x in pair:
        y = _hue(x, hue)
        grey = _grey(y)
        y = grey + (y - grey) * sat
        y = y + bri
        mean = y.mean(dim=(2, 3), keepdim=True)  # per channel, as TensorFlow's contrast
        y = (y - mean) * con + mean
        out.append(y.clamp_(0, 1).contiguous(memory_format=torch.channels_last)
                   if x.is_contiguous(memory_format=torch.channels_last) else y.clamp_(0, 1))
    return out


def recolour_masks(x: torch.Tensor, mask: torch.Tensor, fraction: float,
                   g: torch.Generator) -> torch.Tensor:
    """The input batch with, for each pair with probability ``fraction``, the mask's pixels
    recoloured: a random hue, saturation x[0, 1.5] and brightness x[0.1, 1.2], so the model
    learns the mask's shape and texture rather than the template palette's colours (real masks
    come black, navy, pink, yellow, patterned). Pixels outside the mask, and the target, stay.
    ``mask`` is the true mask (N1HW in [0, 1])."""
    n, dev = x.shape[0], x.device
    pick = (torch.rand(n, generator=g) < fraction).to(dev).view(-1, 1, 1, 1)
    hue = _uniform(n, 0.0, 1.0, g, dev)
    sat = _uniform(n, 0.0, 1.5, g, dev)
    bri = _uniform(n, 0.1, 1.2, g, dev)
    y = _hue(x, hue)
    grey = _grey(y)
    y = ((grey + (y - grey) * sat) * bri).clamp(0, 1)
    m = mask.to(x.dtype) * pick
    return x * (1 - m) + y * m


# An opaque mask keeps at most this share of the generated mask's pixels, which carry the
# shading of the face under it (the renderer shades the template by the face).
TEXTURE_KEEP = 0.5
TEXTURE_FIELD = 0.25  # the largest amplitude of the mask's own smooth shading, x its colour
TEXTURE_FOLDS = 0.15  # the largest amplitude of its folds (pleats, creases)


# The draws come from the CPU generator (the same for a resumed run on any device); the
# full-size fields are built on the batch's device, as a GPU step should not wait for them.
def _smooth_field(n: int, h: int, w: int, g: torch.Generator, device) -> torch.Tensor:
    """(n, 1, h, w) smooth random shading, zero mean and unit deviation per image: a 4 x 4
    grid of noise upsampled, the light and shadow of a mask's own shape at the scale of a face."""
    coarse = torch.randn(n, 1, 4, 4, generator=g).to(device)
    f = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    f = f - f.mean(dim=(2, 3), keepdim=True)
    return f / f.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def _folds(n: int, h: int, w: int, g: torch.Generator, device) -> torch.Tensor:
    """(n, 1, h, w) near-horizontal folds in [-1, 1]: a period of 3-8 % of the side, tilted
    by up to 0.15, sharpened toward creases."""
    period = (torch.rand(n, generator=g) * 0.05 + 0.03).to(device).view(-1, 1, 1)
    tilt = ((torch.rand(n, generator=g) - 0.5) * 0.3).to(device).view(-1, 1, 1)
    phase = (torch.rand(n, generator=g) * 2 * math.pi).to(device).view(-1, 1, 1)
    yy = torch.linspace(0, 1, h, device=device).view(1, h, 1)
    xx = torch.linspace(0, 1, w, device=device).view(1, 1, w)
    wave = torch.sin(2 * math.pi * (yy + tilt * xx) / period + phase)
    return (torch.tanh(3 * wave) / math.tanh(3)).unsqueeze(1)


def _mask_colour(x: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """(N, 3, 1, 1): the mean colour of ``x`` where ``hard`` (N, 1, H, W in {0, 1}) is set."""
    area = hard.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    return (x * hard).sum(dim=(2, 3), keepdim=True) / area


def texture_masks(x: torch.Tensor, mask: torch.Tensor, fraction: float,
                  g: torch.Generator) -> torch.Tensor:
    """The input batch with, for each pair with probability ``fraction``, the mask made
    opaque: its mean colour, shaded by a smooth field of its own and, on half of them, folds,
    with at most TEXTURE_KEEP of the generated mask's pixels left in. A rendered mask is
    shaded by the face under it, so a model trained on it alone learns to read the face
    through the mask; a real mask shows its own shape, and the model then returned the mask's
    colour and pleats as the face (grey faces for black masks, whitish ones for white). Here
    the mask tells as little as a real one and the face must come from around it. Pixels
    outside the mask, the target and the true mask stay. ``mask``: N1HW in [0, 1]."""
    n, dev = x.shape[0], x.device
    h, w = x.shape[-2:]
    pick = (torch.rand(n, generator=g) < fraction).view(-1, 1, 1, 1).to(dev, x.dtype)
    keep = (torch.rand(n, 1, 1, 1, generator=g) * TEXTURE_KEEP).to(dev, x.dtype)
    field = (torch.rand(n, 1, 1, 1, generator=g) * TEXTURE_FIELD).to(dev) * _smooth_field(
        n, h, w, g, dev)
    folded = torch.rand(n, 1, 1, 1, generator=g) < 0.5
    folds = (torch.rand(n, 1, 1, 1, generator=g) * TEXTURE_FOLDS * folded).to(dev) * _folds(
        n, h, w, g, dev)
    own = (_mask_colour(x, (mask > 0.5).to(x.dtype)) * (1 + field + folds).to(x.dtype)
           ).clamp(0, 1)
    y = keep * x + (1 - keep) * own
    m = mask.to(x.dtype) * pick
    return x * (1 - m) + y * m


# A rim is 1 px up to this share of the crop side wide (4 px at 128, 8 at 256): a real mask's
# hem, its inside lining folded over, the shadow it casts, the nose wire's ridge.
RIM_WIDTH = 0.03
RIM_LIGHT = 0.4  # share of rims that are a light lining rather than the mask's own colour


def _opening(m: torch.Tensor, k: int) -> torch.Tensor:
    """Erode then dilate a binary N1HW map with a k x k square."""
    eroded = -F.max_pool2d(-m, k, stride=1, padding=k // 2)
    return F.max_pool2d(eroded, k, stride=1, padding=k // 2)


def rim_masks(x: torch.Tensor, mask: torch.Tensor, fraction: float, g: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The input batch and the true mask with, for each pair with probability ``fraction``, a
    rim drawn around the mask: a band of random width in the input, darker or lighter than
    the mask, or a light lining (white to beige), and the mask grown to cover it, so the
    mask head takes a real mask's edge for part of the mask and the network paints the face
    there. Without this the generated masks' edges are clean, and on real photos the model
    kept the hem's line, under the eyes, as if it were the face. The target stays the clean
    face. ``mask``: N1HW in [0, 1]."""
    n, dev = x.shape[0], x.device
    side = x.shape[-1]
    pick = torch.rand(n, generator=g) < fraction
    widest = max(1, round(RIM_WIDTH * side))
    width = torch.randint(1, widest + 1, (n,), generator=g)
    shade = torch.rand(n, generator=g) * 1.2 + 0.4  # x[0.4, 1.6] the mask's mean colour
    light = torch.rand(n, generator=g) < RIM_LIGHT
    lining = torch.rand(n, 3, generator=g) * torch.tensor([0.15, 0.2, 0.3]) + torch.tensor(
        [0.85, 0.78, 0.7])  # white, cream, beige
    hard = (mask > 0.5).to(x.dtype)
    mean = _mask_colour(x, hard).flatten(1)  # N3: the mask's mean colour in the input
    out_x, out_m = x.clone(), mask.clone()
    # The mask's body only: an opening drops straps and ear loops thinner than 5 px, which
    # have no hem to speak of. One pass per rim width (at most 8 at 256 px), not per pair.
    todo = pick & hard.flatten(1).any(1).cpu()
    for w in range(1, widest + 1):
        idx = torch.nonzero(todo & (width == w)).flatten().to(dev)
        if not len(idx):
            continue
        h, m = hard[idx], mask[idx].to(x.dtype)
        k = 2 * w + 1
        grown = torch.maximum(F.max_pool2d(_opening(h, 5), k, stride=1, padding=w), h)
        # Drawn anti-aliased, like the rendered masks' own edges; learnt as a binary mask,
        # like theirs.
        soft = F.avg_pool2d(grown, 3, stride=1, padding=1, count_include_pad=False)
        band = (soft - m).clamp_(0, 1)
        colour = torch.where(light[idx.cpu()].view(-1, 1), lining[idx.cpu()],
                             (mean[idx].cpu() * shade[idx.cpu()].view(-1, 1)).clamp(0, 1))
        colour = colour.to(dev, x.dtype).view(-1, 3, 1, 1)
        out_x[idx] = x[idx] * (1 - band) + colour * band
        out_m[idx] = torch.maximum(mask[idx], grown.to(mask.dtype))
    return out_x, out_m


def grey_pairs(pair: list[torch.Tensor], fraction: float,
               g: torch.Generator) -> list[torch.Tensor]:
    """Each pair, with probability ``fraction``, turned grey (input and target alike, three
    equal channels): grey and sepia photos are common among real ones, and a model that has
    seen colour only can fail to find a mask on them."""
    n, dev = pair[0].shape[0], pair[0].device
    pick = (torch.rand(n, generator=g) < fraction).to(dev).view(-1, 1, 1, 1)
    return [torch.where(pick, _grey(x).expand_as(x), x) for x in pair]

