"""Colour-balanced copies of a photo, for a second look where :func:`.find_faces.detect_faces`
found no face.

Why: MediaPipe's detectors and the landmark model were trained on ordinary colour photos. A
photo lit blue or orange, or washed out, gives them faces they score just under their
thresholds, and the skin evidence reads no skin on a face lit blue. In a copy with the cast
removed (grey world: every channel scaled to the same mean) such a face is often found. Only
photos that show such a fault are looked at again (:func:`needs_balance`), so photos with
faces, and ordinary photos without, cost nothing more. A copy with each channel stretched to
its full range (which also removes a cast) is where skin is looked for again. The copies are
colour maps of the same pixels: landmarks found on them are the photo's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# A colour cast: the brightest channel's mean over the darkest's (a photo lit blue, orange or
# green). Faces under ordinary light, white balanced or not, stay under 1.5 in nine photos of
# ten of real-masked-dev.
COLOUR_CAST = 1.5
# Low contrast: some channel's range (1st to 99th percentile) under this, of 255 (a washed-out
# or dark photo).
LOW_CONTRAST = 170.0
# The percentiles that bound a channel's range for the stretch.
STRETCH_PERCENTILES = (1.0, 99.0)


def _sample(rgb: np.ndarray) -> np.ndarray:
    """The photo's pixels on a coarse grid (some 256 x 256): cheap statistics on 12 Mpx."""
    step = max(1, max(rgb.shape[:2]) // 256)
    return rgb[::step, ::step].reshape(-1, 3)


def colour_cast(rgb: np.ndarray) -> float:
    """The largest channel mean over the smallest (1.0 for a neutral photo)."""
    means = _sample(rgb).mean(0)
    return float(means.max() / max(float(means.min()), 1.0))


def channel_ranges(rgb: np.ndarray) -> np.ndarray:
    """Each channel's ``(low, high)`` percentiles (STRETCH_PERCENTILES), shape (2, 3)."""
    return np.percentile(_sample(rgb), STRETCH_PERCENTILES, axis=0)


def needs_balance(rgb: np.ndarray) -> bool:
    """Whether a photo has a colour cast (COLOUR_CAST) or a channel of low contrast
    (LOW_CONTRAST): only those get a second look in balanced colour."""
    low, high = channel_ranges(rgb)
    return colour_cast(rgb) >= COLOUR_CAST or float((high - low).min()) < LOW_CONTRAST


def _apply(rgb: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``rgb * scale + offset`` per channel, clipped to uint8, through a lookup table."""
    import cv2

    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(np.round(levels * scale + offset), 0, 255).astype(np.uint8)  # (256, 3)
    return cv2.LUT(np.ascontiguousarray(rgb), lut.reshape(256, 1, 3))


def grey_world(rgb: np.ndarray) -> np.ndarray:
    """The photo with each channel scaled so that all three have the same mean (the grey-world
    assumption: a scene averages to grey)."""
    means = _sample(rgb).astype(np.float64).mean(0)
    return _apply(rgb, means.mean() / np.maximum(means, 1.0), np.zeros(3))


def stretched(rgb: np.ndarray) -> np.ndarray:
    """The photo with each channel stretched from its STRETCH_PERCENTILES to 0-255 (more
    contrast, and a cast removed with it)."""
    low, high = channel_ranges(rgb)
    scale = 255.0 / np.maximum(high - low, 1.0)
    return _apply(rgb, scale, -low * scale)


# The copies by name: where skin is looked for again (see find_faces._balanced_skin).
BALANCED_COPIES: tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...] = (
    ("grey-world", grey_world), ("stretched", stretched))
# The copies searched again for faces, in order, by the name a face found on one is kept on.
# Only grey world: on real-masked-dev the stretched copy found one face more, and that fit was
# a small pseudo-face made of one eye of a face lit blue.
SEARCHED_COPIES = BALANCED_COPIES[:1]
