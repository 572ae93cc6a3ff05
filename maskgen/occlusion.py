"""What lies in front of a mask: hands over the lower face stay in front of the mask drawn there.

A mask is painted on the face's pixels; where a hand covers the face, the real photo shows the
hand, so the pair must too: the hand's pixels keep the clean crop's values and leave the binary
mask, and the sample's metadata says what was hidden by what. A model trained on pairs whose
masks cover the fingers would learn to paint skin over real hands.

The hand's outline comes from its 21 landmarks (:mod:`.hands`): the palm as the polygon of the
wrist and knuckles, each finger as a chain of round-capped segments, a stub of forearm past the
wrist; widths in proportion to the hand's size. Outlines from points cannot follow every
finger's edge; they err on the wide side (a sliver of the face beside a finger shows through
the mask, rather than mask over a finger).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .facepoints import FACE_OVAL, NOSE_TIP

# Presence score of the hand model from which a hand counts as an occluder. MediaPipe keeps
# hands from 0.5; on 3,000 CelebA faces, those under 0.9 were mostly hair, ears and beards.
MIN_OCCLUDER_SCORE = 0.9
# Hand points (MediaPipe's order): the palm's outline, the finger chains.
PALM = (0, 1, 2, 5, 9, 13, 17)
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
WRIST, INDEX_BASE, MIDDLE_BASE, LITTLE_BASE = 0, 5, 9, 17
# Widths per hand size (the larger of the knuckle span and 0.8 wrist-to-middle-knuckle length,
# which stays put when the hand is seen edge-on): finger and thumb radii, forearm half-width
# and length. Measured by eye on CelebA hands at 256 px, then widened by a pixel or two.
FINGER_RADIUS = 0.15
THUMB_RADIUS = 0.17
ARM_HALF_WIDTH = 0.42
ARM_LENGTH = 0.9
# Supersampling of the outline (cv2's fixed-point shift) and the soft edge, in pixels.
SHIFT = 2
EDGE_SIGMA = 0.7


def hand_size(points: np.ndarray) -> float:
    """A hand's size in pixels from its 21 points (see FINGER_RADIUS)."""
    span = float(np.linalg.norm(points[INDEX_BASE, :2] - points[LITTLE_BASE, :2]))
    length = float(np.linalg.norm(points[MIDDLE_BASE, :2] - points[WRIST, :2]))
    return max(span, 0.8 * length, 1.0)


def hand_cover(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much of each pixel the hand whose 21 points (pixels of an
    image of ``shape``) are ``points`` covers."""
    h, w = shape
    out = np.zeros((h, w), np.uint8)
    k = 1 << SHIFT
    pts = np.round(points[:, :2] * k).astype(np.int32)
    size = hand_size(points)
    cv2.fillPoly(out, [cv2.convexHull(pts[list(PALM)])], 255, cv2.LINE_AA, SHIFT)
    for chain in FINGERS:
        r = (THUMB_RADIUS if chain[0] == 1 else FINGER_RADIUS) * size
        thick = max(1, round(2 * r))
        # The palm's edge to the finger's base too: the polygon's corners are the knuckles'
        # centres, half a finger inside the hand's outline.
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            cv2.line(out, tuple(pts[a]), tuple(pts[b]), 255, thick, cv2.LINE_AA, SHIFT)
        for j in chain:
            cv2.circle(out, tuple(pts[j]), round(r * k), 255, -1, cv2.LINE_AA, SHIFT)
    # The palm's sides, as thick as a finger: the polygon runs through the knuckles' centres.
    ring = list(PALM) + [PALM[0]]
    for a, b in zip(ring[:-1], ring[1:], strict=True):
        cv2.line(out, tuple(pts[a]), tuple(pts[b]), 255, max(1, round(2 * FINGER_RADIUS * size)),
                 cv2.LINE_AA, SHIFT)
    # A stub of forearm beyond the wrist, away from the middle knuckle.
    wrist = points[WRIST, :2].astype(np.float64)
    axis = wrist - points[MIDDLE_BASE, :2]
    n = math.hypot(*axis)
    if n > 1e-6:
        axis /= n
        side = np.array([-axis[1], axis[0]]) * ARM_HALF_WIDTH * size
        end = wrist + axis * ARM_LENGTH * size
        quad = np.array([wrist + side, wrist - side, end - side, end + side])
        cv2.fillPoly(out, [np.round(quad * k).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    cover = out.astype(np.float32) * np.float32(1 / 255)
    soft = cv2.GaussianBlur(cover, (0, 0), EDGE_SIGMA)
    # The blur's faint tails and near-1 plateau snapped to 0 and 1: the hand's inside keeps the
    # clean pixels exactly, and pixels well off it stay untouched.
    return np.clip((soft - 0.01) * (1 / 0.98), 0.0, 1.0)


def lower_face(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the face outline below the nose tip, where masks go (``points``: a face's
    478 landmarks in the pixels of an image of ``shape``)."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(points[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    out[: max(0, int(points[NOSE_TIP, 1]))] = 0
    return out.astype(bool)


def in_front(masked: np.ndarray, mask: np.ndarray, clean: np.ndarray, cover: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(masked, mask, hidden)``: the occluder whose ``cover`` (see :func:`hand_cover`) is given
    put back in front of a drawn mask: its pixels take the ``clean`` crop's values (blended at
    its soft edge) and leave the binary ``mask``; ``hidden`` counts the mask pixels it took."""
    a = cover[..., None]
    out = np.round(masked * (1.0 - a) + clean * a).astype(np.uint8)
    solid = cover >= 0.5
    hidden = int(np.count_nonzero(mask[solid]))
    new_mask = mask.copy()
    new_mask[solid] = 0
    return out, new_mask, hidden
