"""The landmark vocabulary: which of FaceMesh's 478 points are which part of a face.

Every landmark index the code names lives here, so a number like 152 means "the chin" in one
place only. "Left" and "right" are the image's: ``LEFT_EYE`` is the subject's right eye. Points
0-467 are the face mesh, 468-477 the two irises (five points each, centre first).

This module sits below everything else and imports nothing of the project.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478
# The mesh without the irises (FaceMesh without its iris model).
NUM_MESH_POINTS = 468

# Eyes and mouth; the mean of each group is the anchor that alignment uses.
LEFT_EYE = (33, 133, 159, 145, 160, 144, 158, 153)  # subject's right eye, image left
RIGHT_EYE = (362, 263, 386, 374, 385, 380, 387, 373)
# Mouth corners only: the lips move when the mouth opens, the corners hardly do.
MOUTH = (61, 291)
# The face outline, clockwise from the top of the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)

# Outer eye corners: the eye line that sets a face's roll.
LEFT_EYE_OUTER = 33
RIGHT_EYE_OUTER = 263
# The nose: the bridge between the eyes, and the tip.
NOSE_BRIDGE = 6
NOSE_TIP = 4
# The middle of the lower lip's lower edge, and the bottom of the chin.
LOWER_LIP = 17
CHIN = 152
# The face outline at ear height (where the lower loop of a mask meets it) and just above,
# beside the top of the ear (where the upper loop goes over it).
LEFT_FACE_SIDE = 234
LEFT_EAR_TOP = 127
RIGHT_FACE_SIDE = 454
RIGHT_EAR_TOP = 356
# The face outline at the jaw's angle, below the ear (left, right).
LEFT_JAW_ANGLE = 58
RIGHT_JAW_ANGLE = 288

# What a mask must cover and leave free (see placement): inner lips, lip middles and mouth
# corners; both alae and the base of the nose.
MOUTH_POINTS = (13, 14, 0, LOWER_LIP, *MOUTH)
NOSTRIL_POINTS = (98, 327, 2)


def _anchor_weights() -> np.ndarray:
    w = np.zeros((3, NUM_LANDMARKS))
    for row, group in enumerate((LEFT_EYE, RIGHT_EYE, MOUTH)):
        w[row, list(group)] = 1.0 / len(group)
    return w


# One product gives all three group means: a face needs a dozen of them (alignment, pose,
# placement), and np.mean over a fancy-indexed group costs ~25 us a call.
_ANCHOR_WEIGHTS = _anchor_weights()


def anchor_means(pts: np.ndarray) -> np.ndarray:
    """Means of the left-eye, right-eye and mouth-corner landmarks of ``(N, D)`` points
    (N = 478, or 468 without irises): ``(3, D)`` float64."""
    return _ANCHOR_WEIGHTS[:, :len(pts)] @ np.asarray(pts, np.float64)


def anchor_points(pts: np.ndarray) -> np.ndarray:
    """Left-eye centre, right-eye centre and mouth centre (3, 2) from 478 landmarks."""
    return anchor_means(pts[:, :2])


def eye_distance(pts: np.ndarray) -> float:
    """The distance between the two eye centres of a face's landmarks, in their pixels: the
    unit of face sizes throughout (the inter-ocular distance)."""
    left, right, _ = anchor_points(pts)
    return float(np.linalg.norm(left - right))
