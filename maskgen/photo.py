"""Draw a mask on a whole photo, not just on its aligned crop.

The face is aligned at about the photo's own resolution, the mask is rendered on that crop
exactly as ``generate`` renders it, and the masked pixels are warped back into the photo. This
makes realistic test photos for ``unmask`` (with the true mask known) and lets users mask their
own pictures.
"""

from __future__ import annotations

import numpy as np

from .align import align_face, alignment_matrix, paste_back
from .render import render_mask
from .templates import Template

# Crop sides for the render: the eyes sit a quarter of the side apart in the aligned crop.
MIN_SIDE, MAX_SIDE = 256, 1024


def render_side(points: np.ndarray) -> int:
    """A crop side that keeps the face at roughly its size in the photo (no loss of detail)."""
    m = alignment_matrix(points, 256)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # crop px per photo px at side 256
    side = int(round(256 / max(scale, 1e-6) / 16)) * 16
    return int(np.clip(side, MIN_SIDE, MAX_SIDE))


def mask_photo(rgb: np.ndarray, points: np.ndarray, template: Template,
               rng: np.random.Generator, wear: str = "proper"
               ) -> tuple[np.ndarray, np.ndarray]:
    """The photo with ``template`` drawn on the face whose landmarks are ``points``, and the
    binary mask (photo-sized uint8, 0 or 255) of the pixels the mask covers."""
    side = render_side(points)
    crop, m, pts = align_face(rgb, points, side)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    r = render_mask(crop, pts, template, rng, source_scale=scale, wear=wear)
    weight = (r.mask > 0).astype(np.float32)
    masked = paste_back(rgb, r.masked, m, weight)
    full = paste_back(np.zeros(rgb.shape[:2], np.uint8), np.full((side, side), 255, np.uint8),
                      m, weight)
    return masked, np.where(full >= 128, 255, 0).astype(np.uint8)
