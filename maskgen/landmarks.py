"""Facial landmarks with MediaPipe FaceMesh (478 points), with retries for hard pictures.

MediaPipe is imported lazily, inside :func:`get_detector`, so that rendering from a landmark
cache and the whole training half work where it is not installed. One FaceMesh instance lives
in each worker process.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NUM_LANDMARKS = 478
# FaceMesh finds faces in a 128 px detector input; tiny pictures are upscaled to this first.
MIN_DETECT_SIDE = 256
# Retries: (border added on each side as a fraction of the longer side, upscale factor).
# Padding helps faces that touch the frame (the detector wants some context around a face).
RETRIES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.25, 1.0), (0.5, 1.0), (1.0, 1.0))
# Eyes and mouth; the mean of each group is the anchor that alignment uses.
LEFT_EYE = (33, 133, 159, 145, 160, 144, 158, 153)  # subject's right eye, image left
RIGHT_EYE = (362, 263, 386, 374, 385, 380, 387, 373)
# Mouth corners only: the lips move when the mouth opens, the corners hardly do.
MOUTH = (61, 291)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)


class NoFace(ValueError):
    """No usable face in a picture; ``reason`` goes to ``failures.jsonl``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Detection:
    """Landmarks of the largest face, ``(478, 3)`` float32: x, y in pixels of the decoded
    image, z in the same pixel scale (FaceMesh's relative depth); plus how it was found."""

    points: np.ndarray
    faces_found: int
    attempt: int  # index into RETRIES that succeeded


@contextmanager
def _quiet_stderr():
    """Silence MediaPipe's C++ start-up chatter (it writes to fd 2 before logging is set up)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@lru_cache(maxsize=2)
def get_detector(refine: bool = True):
    """This process's FaceMesh (static images, up to 4 faces; ``refine`` adds the irises)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import mediapipe as mp
    except ImportError as e:
        raise RuntimeError(
            "landmark detection needs MediaPipe: pip install 'maskface[landmarks]' "
            "(mediapipe==0.10.21). Rendering from a complete --landmarks-cache does not."
        ) from e
    with _quiet_stderr():
        fm = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=4, refine_landmarks=refine,
            min_detection_confidence=0.5)
        fm.process(np.full((48, 64, 3), 128, np.uint8))  # first calls print warnings too
    return fm


def detect_landmarks(rgb: np.ndarray) -> Detection:
    """Landmarks of the largest face in an RGB uint8 image, retrying with padding and upscaling.

    Raises:
        NoFace: ``no-face`` when every retry fails, ``bad-landmarks`` when the mesh found is
            degenerate.
    """
    h, w = rgb.shape[:2]
    up = max(1.0, MIN_DETECT_SIDE / min(h, w))
    base = rgb
    if up > 1.0:
        import cv2

        base = cv2.resize(rgb, (round(w * up), round(h * up)), interpolation=cv2.INTER_CUBIC)
    attempts = [(p, s, True) for p, s in RETRIES] + [(p, s, False) for p, s in RETRIES[:2]]
    for attempt, (pad_frac, scale, refine) in enumerate(attempts):
        pts, n = _run(base, pad_frac, scale, refine)
        if pts is not None:
            if not refine:
                pts = _with_estimated_irises(pts)
            pts = pts / np.float32(up)
            _check(pts, w, h)
            return Detection(pts.astype(np.float32), n, attempt)
    raise NoFace("no-face", f"FaceMesh found no face in {w}x{h} px after {len(attempts)} tries "
                            "(padding, no-iris model)")


def _run(img: np.ndarray, pad_frac: float, scale: float, refine: bool = True
         ) -> tuple[np.ndarray | None, int]:
    import cv2

    pad = round(pad_frac * max(img.shape[:2]))
    work = img
    if pad:
        work = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if scale != 1.0:
        work = cv2.resize(work, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    res = get_detector(refine).process(np.ascontiguousarray(work))
    faces = res.multi_face_landmarks
    if not faces:
        return None, 0
    hh, ww = work.shape[:2]
    best, best_area = None, -1.0
    for f in faces:
        a = np.array([(p.x * ww, p.y * hh, p.z * ww) for p in f.landmark], dtype=np.float64)
        span = a[:, :2].max(0) - a[:, :2].min(0)
        area = float(span[0] * span[1])
        if area > best_area:
            best, best_area = a, area
    assert best is not None
    best = best / scale
    best[:, :2] -= pad
    return best, len(faces)


def _with_estimated_irises(pts: np.ndarray) -> np.ndarray:
    """Append the 10 iris points (468-477) the plain mesh lacks: each iris centred in its eye
    contour, with a ring of radius 0.2 eye widths. Only used when the iris model found no face
    but the plain mesh did (it happens: the iris stage can reject a face)."""
    out = [pts]
    for eye in (LEFT_EYE, RIGHT_EYE):
        c = pts[list(eye)].mean(0)
        r = 0.2 * float(np.linalg.norm(pts[eye[0], :2] - pts[eye[1], :2]))
        ring = [c + [r, 0, 0], c + [0, -r, 0], c + [-r, 0, 0], c + [0, r, 0]]
        out.append(np.stack([c, *ring]))
    return np.concatenate(out)


def _check(pts: np.ndarray, w: int, h: int) -> None:
    if pts.shape != (NUM_LANDMARKS, 3) or not np.isfinite(pts).all():
        raise NoFace("bad-landmarks", f"mesh of shape {pts.shape} with non-finite values")
    iod = float(np.linalg.norm(pts[list(LEFT_EYE), :2].mean(0) - pts[list(RIGHT_EYE), :2].mean(0)))
    if iod < 4.0:
        raise NoFace("face-too-small", f"eyes {iod:.1f} px apart")
    center = pts[:, :2].mean(0)
    if not (-0.25 * w <= center[0] <= 1.25 * w and -0.25 * h <= center[1] <= 1.25 * h):
        raise NoFace("bad-landmarks", "face centre far outside the picture")


def anchor_points(pts: np.ndarray) -> np.ndarray:
    """Left-eye centre, right-eye centre and mouth centre (3, 2) from 478 landmarks."""
    return np.stack([pts[list(LEFT_EYE), :2].mean(0), pts[list(RIGHT_EYE), :2].mean(0),
                     pts[list(MOUTH), :2].mean(0)])
