"""Checks that need no eyes: does a rendered mask sit where it should on this face?

From the landmarks alone: for proper wear the mask covers the mouth and the nostrils, it leaves
both eyes free, and (for types that sit on the face) little of it lies outside the face outline.
Every sample carries these numbers in its metadata; the generator records a sample that fails
instead of writing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .facepoints import FACE_OVAL, LEFT_EYE, MOUTH_POINTS, NOSTRIL_POINTS, RIGHT_EYE

# The lower eyelid and eye corners: a mask reaching these covers the eye.
EYE_POINTS = (*LEFT_EYE, *RIGHT_EYE)


@dataclass(frozen=True)
class Placement:
    mouth_covered: bool
    nostrils_covered: bool
    eyes_free: bool
    off_face: float  # share of the mask's pixels outside the face outline (chin margin allowed)

    def as_dict(self) -> dict:
        return {"mouth_covered": self.mouth_covered, "nostrils_covered": self.nostrils_covered,
                "eyes_free": self.eyes_free, "off_face": round(self.off_face, 4)}

    def problem(self, wear: str = "proper", on_face: bool = True,
                max_off_face: float = 0.25) -> str | None:
        """The first reason this sample is wrong for its wear style, or None."""
        if not self.eyes_free:
            return "covers-eyes"
        if wear in ("proper", "nose-exposed") and not self.mouth_covered:
            return "mouth-uncovered"
        if wear == "proper" and not self.nostrils_covered:
            return "nostrils-uncovered"
        if wear == "nose-exposed" and self.nostrils_covered:
            return "nose-not-exposed"
        if wear == "under-chin" and self.mouth_covered:
            return "mouth-covered"
        if on_face and wear == "proper" and self.off_face > max_off_face:
            return "off-face"
        return None


def face_region(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W): 1 inside the face outline (its convex hull), extended by 12 % below the
    middle of the face, where every mask wraps under the chin."""
    oval = points[list(FACE_OVAL), :2].astype(np.float64)
    centre = oval.sum(0) / len(oval)  # oval.mean(0), without its Python overhead
    below = oval[:, 1] > centre[1]
    oval[below] += (oval[below] - centre) * 0.12
    face = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(oval.astype(np.float32))[:, 0]
    cv2.fillConvexPoly(face, np.round(hull * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
    return face


# Every point the checks look at, in one index: mouth, then nostrils, then eyes.
_CHECKED = np.array(MOUTH_POINTS + NOSTRIL_POINTS + EYE_POINTS)
_NOSTRILS = slice(len(MOUTH_POINTS), len(MOUTH_POINTS) + len(NOSTRIL_POINTS))
_EYES = slice(_NOSTRILS.stop, None)


def check_placement(body: np.ndarray, points: np.ndarray, region: np.ndarray | None = None,
                    origin: tuple[int, int] = (0, 0)) -> Placement:
    """Placement of a mask body (uint8/bool coverage, straps excluded) over a face's landmarks
    (478, 2|3) in the same pixels; ``region`` is :func:`face_region`, when the caller has it.
    ``body`` may be a box cut from the picture, with its top-left corner at ``origin`` (x, y)."""
    h, w = body.shape
    x0, y0 = origin
    p = np.round(points[_CHECKED, :2]).astype(np.intp) - (x0, y0)
    ok = (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
    hit = np.zeros(len(p), bool)
    hit[ok] = body[p[ok, 1], p[ok, 0]] > 0
    if region is None:
        region = face_region(points, (y0 + h, x0 + w))
    face = region[y0:y0 + h, x0:x0 + w]
    n = int(np.count_nonzero(body))
    off = float(np.count_nonzero(body > face)) / n if n else 1.0
    return Placement(bool(hit[:len(MOUTH_POINTS)].all()), bool(hit[_NOSTRILS].all()),
                     not bool(hit[_EYES].any()), off)
