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
# Attempts in order: "mesh" runs FaceMesh on the picture padded by a fraction of its longer side
# (padding helps faces that touch the frame); "boxes" finds face boxes with MediaPipe's
# full-range detector first and meshes a crop around the largest (small faces in big photos,
# which FaceMesh's own short-range detector misses); "plain-mesh" is FaceMesh without the iris
# model, which sometimes accepts a face the iris model rejects.
ATTEMPTS: tuple[tuple[str, float], ...] = (
    ("mesh", 0.0), ("mesh", 0.25), ("boxes", 0.0), ("mesh", 0.5), ("mesh", 1.0),
    ("plain-mesh", 0.0), ("plain-mesh", 0.25))
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
    attempt: int  # index into ATTEMPTS that succeeded


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
    for attempt, (how, pad_frac) in enumerate(ATTEMPTS):
        if how == "boxes":
            pts, n = _run_on_boxes(base)
        else:
            pts, n = _run(base, pad_frac, refine=how == "mesh")
        if pts is not None:
            if pts.shape[0] == 468:
                pts = _with_estimated_irises(pts)
            pts = pts / np.float32(up)
            _check(pts, w, h)
            return Detection(pts.astype(np.float32), n, attempt)
    raise NoFace("no-face", f"no face found in {w}x{h} px after {len(ATTEMPTS)} tries "
                            "(FaceMesh with padding, full-range face detector)")


@lru_cache(maxsize=1)
def get_box_detector():
    """This process's MediaPipe full-range face detector (faces down to a few % of the frame)."""
    get_detector(True)  # same import checks and log silencing
    import mediapipe as mp

    with _quiet_stderr():
        return mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                         min_detection_confidence=0.4)


def _run_on_boxes(img: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Find face boxes, then mesh a square crop of twice the largest box around it."""
    h, w = img.shape[:2]
    with _quiet_stderr():
        res = get_box_detector().process(np.ascontiguousarray(img))
    if not res.detections:
        return None, 0
    boxes = []
    for d in res.detections:
        b = d.location_data.relative_bounding_box
        boxes.append((b.width * w * b.height * h, b.xmin * w, b.ymin * h, b.width * w,
                      b.height * h))
    _, bx, by, bw, bh = max(boxes)
    side = 2.0 * max(bw, bh)
    cx, cy = bx + bw / 2, by + bh / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    crop = img[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    if min(crop.shape[:2]) < 8:
        return None, len(boxes)
    import cv2

    # Upscale small crops so the face fills FaceMesh's input at a useful resolution.
    scale = max(1.0, 256.0 / min(crop.shape[:2]))
    if scale > 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    for pad_frac in (0.0, 0.25):
        pts, _ = _run(crop, pad_frac)
        if pts is not None:
            pts = pts / scale
            pts[:, 0] += max(0, x0)
            pts[:, 1] += max(0, y0)
            return pts, len(boxes)
    return None, len(boxes)


def _run(img: np.ndarray, pad_frac: float, refine: bool = True
         ) -> tuple[np.ndarray | None, int]:
    import cv2

    pad = round(pad_frac * max(img.shape[:2]))
    work = img
    if pad:
        work = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    with _quiet_stderr():  # MediaPipe's C++ warns on new input shapes, straight to fd 2
        res = get_detector(refine).process(np.ascontiguousarray(work))
    faces = res.multi_face_landmarks
    if not faces:
        return None, 0
    hh, ww = work.shape[:2]
    best, best_area = None, -1.0
    for f in faces:
        a = _landmark_array(f) * np.array([ww, hh, ww], np.float64)
        span = a[:, :2].max(0) - a[:, :2].min(0)
        area = float(span[0] * span[1])
        if area > best_area:
            best, best_area = a, area
    assert best is not None
    best[:, :2] -= pad
    return best, len(faces)


# A NormalizedLandmark with x, y, z set serialises to 17 bytes: the list field's tag and length,
# then three float fields, each a tag byte and 4 little-endian bytes.
_LANDMARK_RECORD = np.dtype([("head", "u1", 3), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                             ("tz", "u1"), ("z", "<f4")])
_HEAD = np.array([0x0A, 0x0F, 0x0D], np.uint8)


def _landmark_array(face) -> np.ndarray:
    """(N, 3) normalised x, y, z of a NormalizedLandmarkList.

    Reading 478 protobuf messages attribute by attribute costs ~0.35 ms a face; decoding the
    serialised bytes with one numpy view costs ~20 us. The layout is checked record by record,
    and anything unexpected (e.g. visibility fields) takes the slow, general path.
    """
    raw = face.SerializeToString()
    n = len(face.landmark)
    if len(raw) == 17 * n:
        rec = np.frombuffer(raw, _LANDMARK_RECORD)
        if ((rec["head"] == _HEAD).all() and (rec["ty"] == 0x15).all()
                and (rec["tz"] == 0x1D).all()):
            return np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], np.float64)


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
