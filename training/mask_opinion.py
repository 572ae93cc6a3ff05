"""A restoring model's mask head as evidence that a face fit is a masked face.

``detect_faces`` refuses fits that no second model (trained on bare faces) calls a face and
whose skin is hidden: masked faces under caps, hoods and hair among them. A mask-head model
was trained to find the mask on aligned masked faces; on the crop a fit implies, it finds one
over the lower face of a masked face, and on the ears, hands, coats, logos and signs that the
cascade's detectors proposed in the dev photos it finds none. That is the opinion read here.

Set with the bundled model on the fits that ``detect_faces`` weighed and refused in both
real-masked dev folders (both halves looked at; the even half alone gives the same picture):
masked faces 0.10-0.51, every fit that was no face (ears, hands, coats, logos, signs, a
blanket) 0.09 or less; 0.3 keeps a margin of three times that. Read only on fits a detector
proposed: on the frame stage's own fits of face-free pictures (a coffee cup, a colour wheel)
the mask head sees "masks" of 0.3-0.5 too, and there it would keep them.
"""

from __future__ import annotations

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


def mask_share(prob: np.ndarray) -> float:
    """The share of the lower face a mask head's probability map (H x W, an aligned crop) calls
    masked, or 0 when it also calls the forehead masked."""
    size = prob.shape[0]
    forehead = prob[: round((CANONICAL[0, 1] - ABOVE_EYES) * size)] > 0.5
    if forehead.mean() > MAX_FOREHEAD:
        return 0.0
    return float((prob[round(LOWER_FROM * size):] > 0.5).mean())


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
