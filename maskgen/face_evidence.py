"""Evidence that a landmark fit is a face of its own, beyond the mesh model's presence score:
skin where the upper face should be, and where the fit lies relative to a larger face.

Why these: given a region to look at, FaceMesh's landmark model calls many things a face with
presence 1.0 (an ear beside a turned head, a round pictogram, a mask lying on a white table,
a window pattern). A real face, masked or not, shows skin around the eyes and between the
brows unless the photo has no colour; an ear or a cheek fitted as a small face lies within the
region of the larger face it belongs to. Both are read off the fit itself: no file or photo
set is special-cased.
"""

from __future__ import annotations

import math

import numpy as np

from .facepoints import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, anchor_points, eye_distance

# The upper face that masks leave bare: both brows, the nose bridge and the cheeks just under
# the eyes (FaceMesh indices; masks start below these, sunglasses cover only part of them).
UPPER_FACE = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300, 6, 197,
              117, 118, 119, 120, 121, 346, 347, 348, 349, 350)
# Skin in YCrCb (8 bit): the broad chroma box of Chai and Ngan (1999), widened a little for
# the cold light of stations and hospitals, and not too dark to judge.
SKIN_CR = (133.0, 180.0)
SKIN_CB = (77.0, 135.0)
SKIN_MIN_Y = 35.0
# A photo whose chroma hardly varies (greyscale, sepia, a thick fog) says nothing about skin.
MIN_PHOTO_CHROMA_STD = 4.0


def photo_has_colour(rgb: np.ndarray) -> bool:
    """Whether a photo's chroma varies enough for skin colour to mean anything (a greyscale
    or sepia photo gives no skin evidence either way). Read on a coarse grid: cheap on 12 Mpx."""
    import cv2

    step = max(1, max(rgb.shape[:2]) // 256)
    ycc = cv2.cvtColor(np.ascontiguousarray(rgb[::step, ::step]), cv2.COLOR_RGB2YCrCb)
    return float(ycc[..., 1:].reshape(-1, 2).std(0).max()) >= MIN_PHOTO_CHROMA_STD


def upper_face_skin(rgb: np.ndarray, pts: np.ndarray) -> float:
    """The fraction of skin-coloured pixels in the upper face of a fit (brows, nose bridge,
    under the eyes: what a mask leaves bare), read in a crop around it; 0.0 when the region
    has no pixels in the photo."""
    import cv2

    poly = np.asarray(pts, np.float64)[list(UPPER_FACE), :2]
    h, w = rgb.shape[:2]
    x0, y0 = np.floor(poly.min(0)).astype(int)
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    region = np.zeros((y1 - y0, x1 - x0), np.uint8)
    hull = cv2.convexHull((poly - (x0, y0)).round().astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    inside = region.astype(bool)
    if not inside.any():
        return 0.0
    ycc = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2YCrCb)
    return float(is_skin(ycc[inside].astype(np.float64)).mean())


def is_skin(ycc: np.ndarray) -> np.ndarray:
    """Which YCrCb pixels (..., 3; 8-bit values) are skin-coloured (SKIN_CR, SKIN_CB and
    SKIN_MIN_Y)."""
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    return ((y >= SKIN_MIN_Y) & (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1])
            & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1]))


def face_frame(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fit's own frame: the landmarks' box corners ``lo``, ``hi`` in the frame turned by the
    face's roll (outer eye corners), and the turn ``rot`` (photo -> face frame)."""
    p, q = pts[LEFT_EYE_OUTER, :2], pts[RIGHT_EYE_OUTER, :2]
    angle = math.atan2(float(q[1] - p[1]), float(q[0] - p[0]))
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])
    local = np.asarray(pts, np.float64)[:, :2] @ rot.T
    return local.min(0), local.max(0), rot


def part_of_larger_face(small: np.ndarray, large: np.ndarray, ratio: float,
                        margin: float) -> bool:
    """Whether fit ``small`` is a piece of face ``large``: its eye distance under ``ratio``
    times the large one's and its eye midpoint within the large face's landmark box widened by
    ``margin`` times that box's side on every side (in the large face's own frame, where the
    ears and hair lie just outside the mesh). An ear, a cheek or an eye of a turned head fitted
    as a face of its own is such a piece; a real face behind another shows its eyes outside
    the nearer face."""
    if eye_distance(small) >= ratio * eye_distance(large):
        return False
    lo, hi, rot = face_frame(large)
    pad = margin * float((hi - lo).max())
    mid = anchor_points(small)[:2].mean(0) @ rot.T
    return bool(((mid >= lo - pad) & (mid <= hi + pad)).all())
