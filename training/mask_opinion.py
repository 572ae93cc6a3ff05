"""A restoring model's mask head as evidence that a face fit is a masked face.

``detect_faces`` refuses fits that no second model (trained on bare faces) calls a face and
whose skin is hidden: masked faces under caps, hoods and hair among them. A mask-head model
was trained to find the mask on aligned masked faces; on the crop a fit implies, it finds one
over the lower face of a masked face, and on the ears, hands, coats, logos and signs that the
cascade's detectors proposed in the dev photos it finds none. That is the opinion read here.

Set with the bundled model on the fits that ``detect_faces`` weighed and refused in both
real-masked dev folders (both halves looked at; for the fits a detector proposed the even half
alone separates as well, its non-faces under 0.05): masked faces 0.10-0.51, every fit a
detector proposed that was no face (ears, hands, coats, logos, signs, a blanket) 0.09 or less;
0.3 keeps a margin of three times that. On regions
nobody proposed (the frame's own, turned copies) the mask head also sees "masks", of 0.3-0.5,
on a coffee cup and a colour wheel: there the "mask" above the eyes (the colour wheel) and the
shape of what it calls a mask (the coffee cup's is ragged, :data:`MIN_SOLIDITY`) tell them
apart, and ``detect_faces`` asks only about fits whose upper face shows skin.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..maskgen.align import CANONICAL, align_face
from ..maskgen.find_faces import MaskOpinion
from .predict import Predictor

# The crop's rows read: the lower face (below the crop's middle, where the nose tip is), and
# the forehead (above the eyes by this much of the side), where a face's mask never is.
LOWER_FROM = 0.5
ABOVE_EYES = 0.09
# A fit whose crop shows more than this share of "mask" on the forehead is not one the mask
# head knows: a tinted photo or a blob, not a mask on a face.
MAX_FOREHEAD = 0.05
# A mask is one solid blob: its largest connected region fills at least this share of its
# convex hull. On the dev folders' masked faces 0.79-1.0 (0.85 or more on 32 of 37 fits); on
# the coffee cup's fits with a "mask" of 0.3 or more and a clear forehead, 0.64-0.79.
MIN_SOLIDITY = 0.85


def mask_share(prob: np.ndarray) -> float:
    """The share of the lower face a mask head's probability map (H x W, an aligned crop) calls
    masked; 0 when it also calls the forehead masked, or when what it calls masked is no solid
    blob (:func:`solidity`)."""
    size = prob.shape[0]
    hard = prob > 0.5
    if hard[: round((CANONICAL[0, 1] - ABOVE_EYES) * size)].mean() > MAX_FOREHEAD:
        return 0.0
    if solidity(hard) < MIN_SOLIDITY:
        return 0.0
    return float(hard[round(LOWER_FROM * size):].mean())


def solidity(hard: np.ndarray) -> float:
    """How much of its convex hull the largest connected region of a binary map fills (0 for
    an empty map): near 1 for a mask, less for ragged or scattered regions."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard.astype(np.uint8), connectivity=8)
    if n < 2:
        return 0.0
    largest = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(largest, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(np.vstack(contours)))
    return min(1.0, float(largest.sum()) / max(hull, 1.0))


def mask_opinion(predictor: Predictor) -> MaskOpinion | None:
    """``detect_faces``'s ``mask_opinion`` from a restoring model, or None if it has no mask
    head: the fit's crop aligned as ``unmask`` aligns it, and :func:`mask_share` of its mask."""
    if not predictor.has_mask_head:
        return None

    def opinion(rgb: np.ndarray, points: np.ndarray) -> float:
        crop, _, _ = align_face(rgb, points, predictor.image_size, border="grey")
        _, found = predictor.restore_and_find(crop[None])
        return mask_share(found[0])

    return opinion
