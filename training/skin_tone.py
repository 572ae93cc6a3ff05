"""The restored lower face in the colour of the face's own skin, when the model painted it in
another.

A 128 px model trained on generated pairs often paints the mask's place in a face-shaped smear
that keeps the mask's colour: grey for black masks, white-grey for white ones, blue- or
green-grey (counted strictly on 96 real photos, about half the failures). Its shape and
lightness are the model's; only its chroma is plainly wrong. So where the restored region's
median chroma is not a skin colour at all, and the face shows enough skin of its own above the
mask, the region's chroma (YCrCb Cr, Cb) is moved to that skin's, by the blend weight. A region
already in skin colour is left as the model made it: there the median of the face's skin is no
better a guess than the model's (tried on real photos: it turned a face green).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..maskgen.face_evidence import is_skin

# The face's own skin is read below this share of the crop's side (the brows, the eyes' band,
# the cheeks above the mask; above it, hair and caps) and outside the blend.
SKIN_FROM = 0.3
# Skin pixels needed to trust the reference, as a share of the crop.
MIN_SKIN = 0.02
# The region moved is where the blend weight is over this; the shift is applied by the weight.
REGION = 0.5
# The largest chroma shift (8-bit YCrCb units): a bigger one means the reference is wrong.
MAX_SHIFT = 30.0


def match_skin_tone(crop: np.ndarray, restored: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``restored`` (uint8 RGB, aligned like ``crop``) with its region under ``weight`` moved to
    the chroma of ``crop``'s own skin, when that region's median chroma is no skin colour and
    the crop shows enough skin outside the blend; else ``restored`` itself."""
    region = weight > REGION
    if not region.any():
        return restored
    ycc_r = cv2.cvtColor(restored, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    painted = np.median(ycc_r[region], axis=0)
    if is_skin(painted):
        return restored
    ycc_c = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    reference = is_skin(ycc_c) & (weight <= 0.0)
    reference[: round(SKIN_FROM * crop.shape[0])] = False
    if reference.mean() < MIN_SKIN:
        return restored
    shift = np.median(ycc_c[reference], axis=0) - painted
    shift[0] = 0.0  # the lightness is the model's
    shift[1:] = np.clip(shift[1:], -MAX_SHIFT, MAX_SHIFT)
    moved = ycc_r + shift * weight[..., None]
    return cv2.cvtColor(np.clip(moved, 0, 255).round().astype(np.uint8), cv2.COLOR_YCrCb2RGB)
