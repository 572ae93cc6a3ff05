"""Hands near a face: MediaPipe Hands' own networks, run by LiteRT like :mod:`.facemesh`.

The mediapipe wheel ships the two networks of MediaPipe Hands: a palm detector (192 px input,
SSD with 2016 anchors, 7 keypoints a palm) and a hand landmark model (224 px, 21 points, a
hand-presence score). They run here with MediaPipe's own pre- and post-processing in static-image
mode: the detector on a letterboxed picture, SSD decoding and weighted non-max suppression, a
rotated square ROI per palm (2.6 times the palm box, moved half a box towards the fingers, rolled
so that the wrist-to-middle-finger line points up), the landmark model on each ROI.

The generator looks for hands only in the region around a face's lower half (:func:`hand_region`),
not in the whole photo: a hand elsewhere cannot be in front of the mask, and the detector then
sees face-sized hands at a useful resolution. Even there, most faces have no hand: a glance at
the region at 128 px (the same detector, its input made smaller, :func:`palm_model`) decides
whether the full 192 px pass runs. The models are loaded when first used; LiteRT is imported
then, MediaPipe never.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from .facemesh import (
    Roi,
    _interpreter,
    decode_detections,
    decoding_maps,
    grid_anchors,
    mediapipe_model,
    roi_input,
    roi_matrix,
    weighted_nms,
)

PALM_SIDE = 192
HAND_SIDE = 224
# The glance (see HandFinder.near_face): the palm detector first looks at the region at 128 px,
# under half the pixels and cost of its own 192, and the full pass runs only where the glance
# scores some palm at GLANCE_SCORE or more. On the 3,000 celeba-wild faces (docs/engineering.md,
# "Occluders") the 53 hands over a lower face scored 0.29 or more at a glance, and 36 % of all
# faces score 0.2 or more; at 96 px the glance missed 6 of the 53 even at 0.1.
GLANCE_SIDE = 128
GLANCE_SCORE = 0.2
NUM_HAND_POINTS = 21
# MediaPipe Hands' settings (palm_detection_cpu and hand_landmark_cpu graphs).
MIN_PALM_SCORE = 0.5
MIN_HAND_PRESENCE = 0.5
PALM_NMS_IOU = 0.3
ROI_SCALE = 2.6
ROI_SHIFT_Y = -0.5
MAX_HANDS = 2
# Palm keypoints: 0 the wrist centre, 2 the middle finger's knuckle.
PALM_WRIST, PALM_MIDDLE = 0, 2
# The searched region, in units of the face's alignment crop (see hand_region): the crop's
# square widened by a quarter on each side and reaching 0.45 of a side below its bottom, where
# the hands that hold a chin are.
REGION = (-0.25, -0.05, 1.25, 1.45)


def palm_model(side: int = PALM_SIDE) -> bytes:
    """The palm detector (a .tflite file's bytes) for a ``side`` x ``side`` input (a multiple of
    32). Only two constants name the input's size: the target sizes of its two upsampling
    layers (side / 16 and side / 8); they and the input's shape are set, nothing else."""
    buf = mediapipe_model("palm_detection/palm_detection_lite.tflite").read_bytes()
    if side == PALM_SIDE:
        return buf
    if side % 32:
        raise ValueError(f"the palm detector's input must be a multiple of 32, not {side}")
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    graph = model.subgraphs[0]
    sizes = []
    resize = schema.BuiltinOperator.RESIZE_BILINEAR
    for op in graph.operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode == resize:
            data = model.buffers[graph.tensors[op.inputs[1]].buffer]
            old = np.frombuffer(bytes(data.data), np.int32)
            sizes.append(old.tolist())
            data.data = np.frombuffer((old * side // PALM_SIDE).astype(np.int32).tobytes(),
                                      np.uint8)
    if sorted(sizes) != [[12, 12], [24, 24]]:
        raise RuntimeError(f"unexpected upsampling layers in the palm detector: {sizes}")
    for t in graph.tensors:  # shapes are worked out again from the input's
        t.shapeSignature = None
    graph.tensors[graph.inputs[0]].shape = np.array([1, side, side, 3], np.int32)
    b = flatbuffers.Builder(len(buf) + (1 << 16))
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def palm_anchors() -> np.ndarray:
    """(2016, 2) anchor centres of the palm detector, normalised to its input: a 24x24 grid with
    2 anchors per cell (stride 8), then a 12x12 grid with 6 (strides 16, 16, 16)."""
    return grid_anchors(((24, 2), (12, 6)))


_PALM_ANCHORS = palm_anchors()
_PALM_RAW, _PALM_ANCHOR = decoding_maps(7, PALM_SIDE)


@dataclass(frozen=True)
class Hand:
    """A hand found in a picture: 21 points (x, y in picture pixels, z relative depth in the
    same unit; MediaPipe's order: wrist, then thumb, index, middle, ring and little finger from
    base to tip) and the landmark model's presence score."""

    points: np.ndarray
    score: float


def hand_region(points: np.ndarray, size: int = 256, side: int = PALM_SIDE) -> np.ndarray:
    """2x3 map from region pixels (a ``side`` square) to picture pixels: the square
    :data:`REGION` around the face whose landmarks (picture pixels) are ``points``."""
    from .align import alignment_matrix

    m = alignment_matrix(points, size)
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    x0, y0, x1, y1 = (v * size for v in REGION)
    k = (x1 - x0) / side
    # region (u, v) -> crop (x0 + k u, y0 + k v) -> picture
    to_crop = np.array([[k, 0.0, x0], [0.0, k, y0], [0.0, 0.0, 1.0]])
    return inv @ to_crop


def palm_rois(regressors: np.ndarray, logits: np.ndarray, region: np.ndarray) -> list[Roi]:
    """The hand ROIs (picture pixels) of the palm detector's raw outputs on the region whose
    map to the picture is ``region`` (see :func:`hand_region`), best first."""
    keep = np.flatnonzero(logits >= math.log(MIN_PALM_SCORE / (1.0 - MIN_PALM_SCORE)))
    if not len(keep):
        return []
    rows, scores = decode_detections(regressors, logits, MIN_PALM_SCORE,
                                     anchors=_PALM_ANCHORS, maps=(_PALM_RAW, _PALM_ANCHOR))
    out = []
    scale = math.sqrt(abs(np.linalg.det(region[:, :2]))) * PALM_SIDE
    for row, score in weighted_nms(rows, scores, PALM_NMS_IOU)[:MAX_HANDS]:
        xy = row.reshape(-1, 2) * PALM_SIDE
        pic = xy @ region[:, :2].T + region[:, 2]
        wrist, middle = pic[2 + PALM_WRIST], pic[2 + PALM_MIDDLE]
        # MediaPipe's DetectionsToRects: the wrist-to-knuckle line turned to point up.
        angle = math.pi / 2 - math.atan2(-(middle[1] - wrist[1]), middle[0] - wrist[0])
        angle = (angle + math.pi) % (2 * math.pi) - math.pi
        w = (row[2] - row[0]) * scale
        h = (row[3] - row[1]) * scale
        centre = (pic[0] + pic[1]) / 2
        # RectTransformation: shift half a box along the hand's own up direction, then square.
        cx = centre[0] - h * ROI_SHIFT_Y * math.sin(angle)
        cy = centre[1] + h * ROI_SHIFT_Y * math.cos(angle)
        out.append(Roi(float(cx), float(cy), ROI_SCALE * max(w, h), angle, score))
    return out


class HandFinder:
    """The palm detector and the hand landmark model on LiteRT (one thread each)."""

    def __init__(self) -> None:
        self._palm = _interpreter(mediapipe_model(
            "palm_detection/palm_detection_lite.tflite").read_bytes())
        self._palm_in = self._palm.get_input_details()[0]["index"]
        outs = sorted(self._palm.get_output_details(), key=lambda d: d["name"])
        self._palm_reg, self._palm_score = outs[0]["index"], outs[1]["index"]
        self._glance = _interpreter(palm_model(GLANCE_SIDE))
        self._glance_in = self._glance.get_input_details()[0]["index"]
        self._glance_score = sorted(self._glance.get_output_details(),
                                    key=lambda d: d["name"])[1]["index"]
        self._hand = _interpreter(mediapipe_model(
            "hand_landmark/hand_landmark_full.tflite").read_bytes())
        self._hand_in = self._hand.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._hand.get_output_details()}
        # Identity: 21 x (x, y, z) in input pixels; Identity_1: presence.
        self._hand_pts, self._hand_flag = outs["Identity"], outs["Identity_1"]

    def palms(self, rgb: np.ndarray, region: np.ndarray) -> list[Roi]:
        """Hand ROIs of the palms the detector finds in ``region`` of ``rgb`` (black outside
        the picture, values in [0, 1] as MediaPipe's palm graph feeds them)."""
        x = roi_input(rgb, region, side=PALM_SIDE, black_outside=True)
        self._palm.set_tensor(self._palm_in, x[None])
        self._palm.invoke()
        return palm_rois(self._palm.get_tensor(self._palm_reg)[0].astype(np.float64),
                         self._palm.get_tensor(self._palm_score)[0, :, 0], region)

    def glance(self, rgb: np.ndarray, points: np.ndarray) -> float:
        """The best palm score of the detector at :data:`GLANCE_SIDE` px on the region around
        the face whose landmarks in ``rgb`` are ``points``: a quick look for anything
        hand-like there."""
        x = roi_input(rgb, hand_region(points, side=GLANCE_SIDE), side=GLANCE_SIDE,
                      black_outside=True)
        self._glance.set_tensor(self._glance_in, x[None])
        self._glance.invoke()
        logit = float(self._glance.get_tensor(self._glance_score).max())
        return 1.0 / (1.0 + math.exp(-min(max(logit, -100.0), 100.0)))

    def hand(self, rgb: np.ndarray, roi: Roi) -> Hand | None:
        """The hand in ``roi``, or None when the landmark model says there is none."""
        m = roi_matrix(roi, HAND_SIDE)
        self._hand.set_tensor(self._hand_in, roi_input(rgb, m, side=HAND_SIDE,
                                                       black_outside=True)[None])
        self._hand.invoke()
        score = float(self._hand.get_tensor(self._hand_flag).ravel()[0])
        if score < MIN_HAND_PRESENCE:
            return None
        raw = self._hand.get_tensor(self._hand_pts).reshape(NUM_HAND_POINTS, 3).astype(np.float64)
        pts = np.empty_like(raw)
        pts[:, :2] = raw[:, :2] @ m[:, :2].T + m[:, 2]
        pts[:, 2] = raw[:, 2] * roi.size / HAND_SIDE
        return Hand(pts, score)

    def near_face(self, rgb: np.ndarray, points: np.ndarray) -> list[Hand]:
        """The hands (at most two) in the region around the face whose landmarks in ``rgb``
        are ``points``. The palm detector's full pass runs only where a :meth:`glance` finds
        something hand-like: most faces have no hand near, and their answer is the same."""
        if self.glance(rgb, points) < GLANCE_SCORE:
            return []
        return [h for h in (self.hand(rgb, r) for r in self.palms(rgb, hand_region(points)))
                if h is not None]


_THREAD = threading.local()


def get_hand_finder() -> HandFinder:
    """This thread's :class:`HandFinder` (an interpreter must not run in two threads at once)."""
    finder = getattr(_THREAD, "finder", None)
    if finder is None:
        finder = _THREAD.finder = HandFinder()
    return finder


def find_hands(rgb: np.ndarray, points: np.ndarray) -> tuple[tuple[np.ndarray, float], ...]:
    """The hands near the face whose landmarks in ``rgb`` are ``points``, as the landmark cache
    keeps them: (21 points as float32, score) each."""
    from .facemesh import litert_available

    if not litert_available():
        raise RuntimeError("finding hands needs the LiteRT runtime: pip install "
                           "'maskface[landmarks]' (or generate with --no-hands)")
    return tuple((h.points.astype(np.float32), round(h.score, 4))
                 for h in get_hand_finder().near_face(rgb, points))
