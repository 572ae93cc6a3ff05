"""MediaPipe FaceMesh's own networks, run by LiteRT instead of MediaPipe's graph runtime.

Same models (the .tflite files inside the pinned mediapipe wheel), same pre- and
post-processing as FaceMesh in static-image mode: the short-range face detector on the
letterboxed picture, SSD decoding and weighted non-max suppression, a rotated square ROI per
face, the 478-point landmark model with attention on each ROI, the refinement of lips, eyes and
irises, and FaceMesh's face-presence gate. Why: detection is most of the generator's cold
cost. On the 2-core reference VM (``bench/facemesh.py``, 320 CelebA pictures) a FaceMesh pass
takes 5.2 ms here one picture at a time and 4.3 ms in chunks of 64 (:meth:`FaceMesh.faces_many`),
against 5.9 ms in MediaPipe's graph; and a generator worker that never loads MediaPipe starts
0.7 s sooner and runs its other stages faster too (README, "Landmark runtime").

The attention model contains three MediaPipe custom operators that LiteRT lacks
(Landmarks2TransformMatrix, TransformTensorBilinear, TransformLandmarks). The model is split
around them into two LiteRT sub-models, and the operators are computed here (numpy, and numba
for the feature crops) from their attributes stored in the model itself.
``tests/test_facemesh.py`` checks the result against MediaPipe's own FaceMesh.

Imports of LiteRT and MediaPipe happen only when a model is first loaded.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DETECTOR_SIDE = 128
MESH_SIDE = 192
# FaceMesh's settings (mediapipe/modules/face_detection and face_landmark graphs).
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
MAX_FACES = 4
# ROI side per face-box side and per landmark span, as in MediaPipe's face graphs.
ROI_SCALE = 1.5
SAME_ROI_IOU = 0.5
# FaceMesh's own threshold on its face-presence probability.
MIN_PRESENCE = 0.5
# Iris depth: the mean depth of the eye contour (its first 16 refined points).
IRIS_DEPTH_POINTS = 16
# Faces per run of the landmark model: past ~4 a batch gains little (bench/facemesh.py).
MESH_BATCH = 8


def mediapipe_model(name: str) -> Path:
    """Path of one of the .tflite models shipped inside the mediapipe wheel, found without
    importing mediapipe (slow, and not needed here)."""
    from importlib.util import find_spec

    spec = find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("landmark detection needs MediaPipe's models: "
                           "pip install 'maskface[landmarks]' (mediapipe==0.10.21)")
    return Path(list(spec.submodule_search_locations)[0]) / "modules" / name


@contextmanager
def quiet_stderr():
    """Silence the C++ chatter of MediaPipe and LiteRT (written to fd 2, past Python's logging)."""
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


def litert_available() -> bool:
    """Whether the LiteRT runtime (``ai-edge-litert``) is installed."""
    from importlib.util import find_spec

    return find_spec("ai_edge_litert") is not None


def _interpreter(content: bytes):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate", once per model
        # One thread: the generator runs one process per core.
        it = Interpreter(model_content=content, num_threads=1)
        it.allocate_tensors()
    return it


# --- the face detector ------------------------------------------------------------------------


def grid_anchors(layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Anchor centres of a MediaPipe SSD detector, normalised to its input: for each
    ``(grid, per_cell)`` layer, a grid x grid of cell centres, each repeated per_cell times."""
    out = []
    for grid, per_cell in layers:
        c = (np.arange(grid) + 0.5) / grid
        xs, ys = np.meshgrid(c, c)
        cells = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out)


def ssd_anchors() -> np.ndarray:
    """(896, 2) anchor centres of the short-range detector: a 16x16 grid with 2 anchors per
    cell (stride 8), then an 8x8 grid with 6 (strides 16, 16, 16)."""
    return grid_anchors(((16, 2), (8, 6)))


_ANCHORS = ssd_anchors()


@dataclass(frozen=True)
class FaceBox:
    """A detection in picture pixels: box corners, 6 keypoints (eyes first: the subject's right
    eye, then the left), and the detector's score."""

    x0: float
    y0: float
    x1: float
    y1: float
    keypoints: np.ndarray
    score: float


def decoding_maps(keypoints: int = 6, side: int = DETECTOR_SIDE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every decoded value of a MediaPipe SSD detector (``keypoints`` keypoints, a ``side`` px
    input) is linear in the raw outputs and the anchor centre: a row is
    ``raw @ A + anchor @ B``. Raw columns: centre offset x, y, width, height, the keypoints'
    x, y; decoded: x0, y0, x1, y1, the keypoints' x, y."""
    n = 4 + 2 * keypoints
    a = np.zeros((n, n))
    b = np.zeros((2, n))
    for corner, sign in ((0, -0.5), (1, 0.5)):  # x0, y0 then x1, y1: centre -+ half the size
        for axis in (0, 1):
            col = 2 * corner + axis
            a[axis, col], a[2 + axis, col] = 1.0, sign
            b[axis, col] = 1.0
    for k in range(4, n):  # keypoints: offset + anchor
        a[k, k] = 1.0
        b[k % 2, k] = 1.0
    return a / side, b


_RAW_MAP, _ANCHOR_MAP = decoding_maps()


def decode_detections(regressors: np.ndarray, logits: np.ndarray,
                      min_score: float = MIN_DETECTION_SCORE, *,
                      anchors: np.ndarray = _ANCHORS,
                      maps: tuple[np.ndarray, np.ndarray] = (_RAW_MAP, _ANCHOR_MAP)
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes above ``min_score`` from the detector's raw outputs ((896, 16) and (896,)):
    ``(rows, scores)``, each row ``x0, y0, x1, y1`` then 6 keypoints ``x, y``, normalised to the
    detector's input. Another SSD detector of the same kind (the palm detector) passes its own
    ``anchors`` and decoding ``maps``."""
    # score >= min_score exactly where logit >= its logit: the sigmoid only for those kept.
    keep = np.flatnonzero(logits >= math.log(min_score / (1.0 - min_score)))
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -100.0, 100.0)))
    rows = regressors[keep].astype(np.float64) @ maps[0] + anchors[keep] @ maps[1]
    return rows, scores


def weighted_nms(rows: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU
                 ) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-max suppression: best first, each kept detection becomes the
    score-weighted mean (box and keypoints) of the detections overlapping it by more than
    ``iou`` (intersection over union), and keeps its own score."""
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    area = (rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1])
    out = []
    left = np.arange(len(rows))
    while len(left):
        top = rows[left[0]]
        lo = np.maximum(rows[left, :2], top[:2])
        hi = np.minimum(rows[left, 2:4], top[2:4])
        side = np.maximum(hi - lo, 0.0)
        inter = side[:, 0] * side[:, 1]
        union = area[left[0]] + area[left] - inter
        close = inter > iou * union  # IOU > iou, without dividing by a zero union
        group = left[close]
        w = scores[group]
        out.append((w @ rows[group] / w.sum(), float(scores[left[0]])))
        left = left[~close]
    return out


class FaceDetector:
    """The short-range face detector (128 px input) on LiteRT."""

    def __init__(self) -> None:
        self._it = _interpreter(mediapipe_model(
            "face_detection/face_detection_short_range.tflite").read_bytes())
        self._input = self._it.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._it.get_output_details()}
        self._regressors, self._logits = outs["regressors"], outs["classificators"]
        self._x = np.empty((1, DETECTOR_SIDE, DETECTOR_SIDE, 3), np.float32)  # reused input

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB uint8 picture, best first, at most MAX_FACES: the picture
        letterboxed (black) to a square, scaled to 128 px, values in [-1, 1]."""
        import cv2

        h, w = rgb.shape[:2]
        side = float(max(h, w))
        k = DETECTOR_SIDE / side
        # Input pixel u samples the picture at x = u / k - (side - w) / 2, OpenCV's pixel
        # convention, as MediaPipe's own resampling does. (cv2.resize, centre to centre,
        # moves the boxes by a fraction of a pixel and the meshes by 0.3 % of the eye
        # distance on average: the landmark model is that sensitive to its region.)
        m = np.array([[k, 0.0, (side - w) / 2 * k], [0.0, k, (side - h) / 2 * k]])
        small = cv2.warpAffine(rgb, m, (DETECTOR_SIDE, DETECTOR_SIDE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = np.multiply(small, np.float32(2 / 255), out=self._x[0], dtype=np.float32)
        np.subtract(x, np.float32(1), out=x)
        self._it.set_tensor(self._input, self._x)
        self._it.invoke()
        rows, scores = decode_detections(self._it.get_tensor(self._regressors)[0],
                                         self._it.get_tensor(self._logits)[0, :, 0])
        boxes = []
        for row, score in weighted_nms(rows, scores)[:MAX_FACES]:
            xy = row.reshape(-1, 2) * side - ((side - w) / 2, (side - h) / 2)
            boxes.append(FaceBox(xy[0, 0], xy[0, 1], xy[1, 0], xy[1, 1], xy[2:], score))
        return boxes


# --- the landmark model with attention --------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    """A square region for the landmark model: centre and side in photo pixels; ``angle`` the
    face's roll in radians (clockwise on screen, MediaPipe's convention); ``prior`` how much its
    source believed in it, which orders the work."""

    cx: float
    cy: float
    size: float
    angle: float
    prior: float = 0.0


def roi_from_box(box: FaceBox) -> Roi:
    """FaceMesh's ROI for a detection: the box centre, a square of 1.5 times the box's longer
    side, rolled so that the detector's eyes lie level."""
    (rx, ry), (lx, ly) = box.keypoints[0], box.keypoints[1]
    angle = math.atan2(ly - ry, lx - rx)
    return Roi((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2,
               ROI_SCALE * max(box.x1 - box.x0, box.y1 - box.y0), angle, box.score)


def _roi_iou(a: Roi, b: Roi) -> float:
    """IOU of two ROIs as axis-aligned squares (rotation ignored, as MediaPipe's association
    step does)."""
    w = max(0.0, min(a.cx + a.size / 2, b.cx + b.size / 2) - max(a.cx - a.size / 2,
                                                                  b.cx - b.size / 2))
    h = max(0.0, min(a.cy + a.size / 2, b.cy + b.size / 2) - max(a.cy - a.size / 2,
                                                                  b.cy - b.size / 2))
    union = a.size ** 2 + b.size ** 2 - w * h
    return w * h / union if union > 0 else 0.0


def distinct_rois(rois: list[Roi]) -> list[Roi]:
    """ROIs left after FaceMesh's association step: a later ROI overlapping an earlier one by
    more than SAME_ROI_IOU replaces it."""
    out: list[Roi] = []
    for r in rois:
        out = [o for o in out if _roi_iou(o, r) <= SAME_ROI_IOU] + [r]
    return out


def roi_matrix(roi: Roi, side: int = MESH_SIDE) -> np.ndarray:
    """2x3 map from model-input pixels (u, v) to picture pixels: the ROI's top-left corner at
    (0, 0), its bottom-right at (side, side)."""
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    k = roi.size / side
    return np.array([[c * k, -s * k, roi.cx - roi.size / 2 * (c - s)],
                     [s * k, c * k, roi.cy - roi.size / 2 * (s + c)]])


def roi_input(rgb: np.ndarray, m: np.ndarray, out: np.ndarray | None = None,
              side: int = MESH_SIDE, black_outside: bool = False) -> np.ndarray:
    """A model's (side, side, 3) float32 input in [0, 1]: the ROI whose :func:`roi_matrix` is
    ``m``, resampled bilinearly, edge pixels repeated outside the picture (black with
    ``black_outside``, as MediaPipe's hand graphs pad); written into ``out`` when given."""
    import cv2

    border = ({"borderMode": cv2.BORDER_CONSTANT, "borderValue": (0, 0, 0)} if black_outside
              else {"borderMode": cv2.BORDER_REPLICATE})
    crop = cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          **border)
    return np.multiply(crop, np.float32(1 / 255), out=out, dtype=np.float32)


def transform_matrix(points: np.ndarray, attrs: dict) -> np.ndarray:
    """MediaPipe's Landmarks2TransformMatrix (v2) for a batch of meshes (n, N, 2|3): each one's
    4x4 map (n, 4, 4) from a (16 x 16) feature crop to the landmark model's coordinates, for
    the region around ``attrs['subset_idxs']``, rolled like the line between the two rotation
    landmarks."""
    pts = points.astype(np.float64)
    left, right = pts[:, attrs["left_rotation_idx"]], pts[:, attrs["right_rotation_idx"]]
    rot = attrs["target_rotation_radians"] - np.arctan2(right[:, 1] - left[:, 1],
                                                        right[:, 0] - left[:, 0])
    c, s = np.cos(rot)[:, None], np.sin(rot)[:, None]
    # The region's points rotated by rot: its box there, centre rotated back.
    x, y = pts[:, attrs["subset_idxs"], 0], pts[:, attrs["subset_idxs"], 1]
    tx, ty = x * c - y * s, x * s + y * c
    lo_x, hi_x, lo_y, hi_y = tx.min(1), tx.max(1), ty.min(1), ty.max(1)
    c, s = c[:, 0], s[:, 0]
    mx, my = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    cx, cy = c * mx + s * my, -s * mx + c * my
    out_w, out_h = attrs["output_width"], attrs["output_height"]
    sx = attrs["scale_x"] * (hi_x - lo_x) / out_w
    sy = attrs["scale_y"] * (hi_y - lo_y) / out_h
    # shift(centre) @ rotate(-rot) @ scale(sx, sy) @ shift(-out / 2)
    a, b, d, e = c * sx, s * sy, -s * sx, c * sy
    m = np.zeros((len(pts), 4, 4), np.float32)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 3] = a, b, cx - a * out_w / 2 - b * out_h / 2
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 3] = d, e, cy - d * out_w / 2 - e * out_h / 2
    m[:, 2, 2] = m[:, 3, 3] = 1.0
    return m


def transform_tensor_bilinear(features: np.ndarray, matrix: np.ndarray, out_h: int, out_w: int
                              ) -> np.ndarray:
    """MediaPipe's TransformTensorBilinear (v2) for a batch: an (n, out_h, out_w, C) crop of
    (n, H, W, C) float32 features, each sampled bilinearly at its ``matrix`` (n, 4, 4) applied
    to output pixel centres; zero where a sample falls outside the features."""
    out = np.zeros((len(features), out_h, out_w, features.shape[3]), np.float32)
    _bilinear_kernel()(np.ascontiguousarray(features, np.float32),
                       np.asarray(matrix, np.float64).reshape(-1, 4, 4), out)
    return out


@lru_cache(maxsize=1)
def _bilinear_kernel():
    # numba is imported here, not at the top: it costs ~0.3 s a process, and only detection
    # needs this kernel. (A numpy version costs ~0.1 ms a crop: a dozen small array passes.)
    from numba import njit

    @njit(cache=True, nogil=True)
    def crop(features, matrices, out):  # pragma: no cover - compiled
        n, h, w, ch = features.shape
        out_h, out_w = out.shape[1], out.shape[2]
        for k in range(n):
            m = matrices[k]
            # Pixel centres on both sides (the op's "align corners" correction).
            tx0 = m[0, 3] + 0.5 * (m[0, 0] + m[0, 1]) - 0.5
            ty0 = m[1, 3] + 0.5 * (m[1, 0] + m[1, 1]) - 0.5
            for v in range(out_h):
                for u in range(out_w):
                    tx = m[0, 0] * u + m[0, 1] * v + tx0
                    ty = m[1, 0] * u + m[1, 1] * v + ty0
                    if tx < 0 or tx > w - 1 or ty < 0 or ty > h - 1:
                        continue
                    x0, y0 = int(np.floor(tx)), int(np.floor(ty))
                    fx, fy = tx - x0, ty - y0
                    # Past the last row or column the op reads 0 (with weight 0 anyway).
                    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
                    for c in range(ch):
                        top = (1 - fx) * features[k, y0, x0, c] + fx * features[k, y0, x1, c]
                        bottom = (1 - fx) * features[k, y1, x0, c] + fx * features[k, y1, x1, c]
                        out[k, v, u, c] = (1 - fy) * top + fy * bottom

    return crop


def transform_landmarks(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """MediaPipe's TransformLandmarks (v2) for a batch: (n, N, 2) points through their 4x4
    matrices' (n, 4, 4) top rows."""
    m = matrix.astype(np.float64)
    p = points.astype(np.float64)
    x, y = p[..., 0], p[..., 1]
    return np.stack([x * m[:, 0, :1] + y * m[:, 0, 1:2] + m[:, 0, 3:],
                     x * m[:, 1, :1] + y * m[:, 1, 1:2] + m[:, 1, 3:]], -1)


@dataclass(frozen=True)
class CustomOp:
    """One of the model's MediaPipe operators, computed here: its kind, tensors and attributes."""

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    attrs: dict


@dataclass(frozen=True)
class SplitModel:
    """The attention model cut around its custom operators: ``first`` (image to mesh, face flag
    and features), then ``before`` (the three crops), ``second`` (lips, eyes and irises in their
    crops), then ``after`` (those points mapped back). Tensors are the whole model's ids;
    ``outputs`` names the tensor holding each model output."""

    first: bytes
    second: bytes
    first_outputs: tuple[int, ...]
    second_inputs: tuple[int, ...]
    second_outputs: tuple[int, ...]
    before: tuple[CustomOp, ...]
    after: tuple[CustomOp, ...]
    outputs: dict[str, int]


# Bump when split_model's result changes: cached splits of another version are not used.
SPLIT_VERSION = 2


def split_model(buf: bytes) -> SplitModel:
    """Split the 478-point model (a .tflite file's bytes) around its custom operators, with a
    free batch dimension (see :func:`_free_batch`)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    _free_batch(model, schema)
    graph = model.subgraphs[0]
    custom = {}
    for k, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex].customCode
        if code:
            custom[k] = CustomOp(code.decode(), tuple(int(i) for i in op.inputs),
                                 tuple(int(i) for i in op.outputs), _custom_attrs(op))
    stage = _op_stages(graph, set(custom))
    if sorted({stage[k] for k in custom}) != [0, 1, 2]:
        raise RuntimeError("unexpected layout of the landmark model's custom operators")
    const = {i for i, t in enumerate(graph.tensors) if model.buffers[t.buffer].data is not None}
    first_in, first_out, first = _submodel(
        model, [k for k, s in stage.items() if s == 0 and k not in custom], const)
    second_in, second_out, second = _submodel(
        model, [k for k, s in stage.items() if s in (1, 2) and k not in custom], const)
    names = {i: t.name.decode() for i, t in enumerate(graph.tensors)}
    return SplitModel(
        first, second, tuple(first_out), tuple(second_in), tuple(second_out),
        tuple(custom[k] for k in sorted(custom) if stage[k] < 2),
        tuple(custom[k] for k in sorted(custom) if stage[k] == 2),
        _output_sources(graph, names, set(custom)))


def load_split_model(path: Path) -> SplitModel:
    """:func:`split_model` of a model file, kept in the user's cache directory: splitting costs
    ~0.3 s of Python, which every worker process would pay; loading the cached split ~11 ms
    (hashing the 2.5 MB model included)."""
    import hashlib
    import pickle
    import tempfile

    buf = path.read_bytes()
    key = hashlib.sha256(buf).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maskface"
    cached = root / f"{path.stem}-{key}-split{SPLIT_VERSION}.pickle"
    try:
        split = pickle.loads(cached.read_bytes())
        if isinstance(split, SplitModel):
            return split
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        pass
    split = split_model(buf)
    try:  # a cache we cannot write only costs time
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, delete=False, suffix=".tmp") as f:
            f.write(pickle.dumps(split))
        os.replace(f.name, cached)  # atomic: parallel workers may race here
    except OSError:
        pass
    return split


class AttentionMesh:
    """The 478-point landmark model with attention, run as a :class:`SplitModel`."""

    def __init__(self, split: SplitModel) -> None:
        self._split = split
        self._a = _interpreter(split.first)
        self._b = _interpreter(split.second)
        # (tensor of the whole model, its slot in the sub-model) for each input and output.
        self._a_out = _slots(split.first_outputs, self._a.get_output_details())
        self._b_in = _slots(split.second_inputs, self._b.get_input_details())
        self._b_out = _slots(split.second_outputs, self._b.get_output_details())
        self._input_index = self._a.get_input_details()[0]["index"]
        self._outputs = split.outputs
        # Lips, left eye, right eye: the regions of the three crops, in the model's order.
        self._regions = [op.attrs["subset_idxs"] for op in split.before
                         if op.kind == "Landmarks2TransformMatrix"]
        if len(self._regions) != 3:
            raise RuntimeError("unexpected layout of the landmark model's crops")
        self._batch = 1

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(points, presence)`` for one (192, 192, 3) float32 input: 478 points x, y, z in
        input pixels (FaceMesh's refined mesh), and the face-presence probability."""
        pts, presence = self.run(x[None])
        return pts[0], float(presence[0])

    def run(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`__call__` for a batch of inputs (N, 192, 192, 3): points (N, 478, 3) and
        presences (N,), each face's values the same as alone. On the 2-core VM the two
        sub-models take ~1.9 ms a face in batches of 8 against ~2.3 ms one at a time."""
        n = len(xs)
        self._resize(n)
        values: dict[int, np.ndarray] = {}
        self._a.set_tensor(self._input_index, np.ascontiguousarray(xs, np.float32))
        self._a.invoke()
        for index, slot in self._a_out:
            values[index] = self._a.get_tensor(slot)
        self._run_custom(values, self._split.before)
        for index, slot in self._b_in:
            self._b.set_tensor(slot, values[index])
        self._b.invoke()
        for index, slot in self._b_out:
            values[index] = self._b.get_tensor(slot)
        self._run_custom(values, self._split.after)
        return self._assemble(values, n)

    def _resize(self, n: int) -> None:
        """Give both sub-models batch ``n`` (~0.1 ms when it changes)."""
        if n == self._batch:
            return
        for it in (self._a, self._b):
            for d in it.get_input_details():
                it.resize_tensor_input(d["index"], [n, *d["shape"][1:]])
            it.allocate_tensors()
        self._batch = n

    @staticmethod
    def _run_custom(values: dict[int, np.ndarray], ops: tuple[CustomOp, ...]) -> None:
        for op in ops:
            kind, attrs = op.kind, op.attrs
            ins = [values[i] for i in op.inputs]
            if kind == "Landmarks2TransformMatrix":
                out = transform_matrix(ins[0], attrs)
            elif kind == "TransformTensorBilinear":
                out = transform_tensor_bilinear(ins[0], ins[1], attrs["output_height"],
                                                attrs["output_width"])
            elif kind == "TransformLandmarks":
                out = transform_landmarks(ins[0], ins[1]).astype(np.float32)
            else:
                raise RuntimeError(f"unknown custom operator {kind} in the landmark model")
            values[op.outputs[0]] = out

    def _assemble(self, values: dict[int, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        def out(name: str) -> np.ndarray:
            return np.asarray(values[self._outputs[name]], np.float64).reshape(n, -1)

        mesh = out("output_mesh_identity").reshape(n, 468, 3)
        pts = np.zeros((n, 478, 3))
        pts[:, :468] = mesh
        for name, idx in zip(("output_lips", "output_left_eye", "output_right_eye"),
                             self._regions, strict=True):
            pts[:, idx, :2] = out(name).reshape(n, -1, 2)
        for name, eye, start in (("output_left_iris", 1, 468), ("output_right_iris", 2, 473)):
            pts[:, start:start + 5, :2] = out(name).reshape(n, 5, 2)
            depth = mesh[:, self._regions[eye][:IRIS_DEPTH_POINTS], 2].mean(1)
            pts[:, start:start + 5, 2] = depth[:, None]
        flag = out("conv_faceflag")[:, 0]
        return pts, 1.0 / (1.0 + np.exp(-flag))


def _slots(tensors: tuple[int, ...], details: list[dict]) -> list[tuple[int, int]]:
    return [(t, d["index"]) for t, d in zip(tensors, details, strict=True)]


def _free_batch(model, schema) -> None:
    """Let ``model`` (a ModelT, changed in place) run several inputs at once: its reshapes and
    its one slice name batch 1 explicitly; the batch becomes -1 (the count of the others made
    explicit) and the slice takes the whole batch. The operators themselves are unchanged,
    and each sample's values are the same as alone (``tests/test_facemesh.py``)."""
    graph = model.subgraphs[0]
    ops = schema.BuiltinOperator
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        if kind == ops.RESHAPE:
            per_sample = int(np.prod(graph.tensors[op.inputs[0]].shape[1:]))
            shape = [int(v) for v in op.builtinOptions.newShape]
            known = int(np.prod([v for v in shape[1:] if v > 0]))
            if (len(op.inputs) > 1 and op.inputs[1] >= 0) or shape[0] != 1:
                raise RuntimeError("unexpected reshape in the landmark model")
            op.builtinOptions.newShape = np.array(
                [-1] + [v if v > 0 else per_sample // known for v in shape[1:]], np.int32)
        elif kind == ops.STRIDED_SLICE:
            begin, end, strides = (np.frombuffer(bytes(
                model.buffers[graph.tensors[i].buffer].data), np.int32) for i in op.inputs[1:])
            if begin[0] != 0 or end[0] != 1 or strides[0] != 1:
                raise RuntimeError("unexpected slice in the landmark model")
            op.builtinOptions.beginMask |= 1
            op.builtinOptions.endMask |= 1


def _op_stages(graph, custom: set[int]) -> dict[int, int]:
    """For each operator, how many custom operators lie upstream of it (0 before the first)."""
    level: dict[int, int] = {}
    stage = {}
    for k, op in enumerate(graph.operators):
        s = max([level.get(i, 0) for i in op.inputs if i >= 0] or [0])
        stage[k] = s
        for i in op.outputs:
            level[i] = s + 1 if k in custom else s
    return stage


def _custom_attrs(op) -> dict:
    if op.customOptions is None:
        return {}
    from flatbuffers import flexbuffers

    attrs = dict(flexbuffers.Loads(bytes(op.customOptions)))
    if "subset_idxs" in attrs:
        attrs["subset_idxs"] = np.asarray(attrs["subset_idxs"], np.intp)
    return attrs


def _submodel(model, ops: list[int], const: set[int]):
    """A model of the operators ``ops`` of ``model`` (plus the weight-decoding operators they
    need), with as inputs the non-constant tensors they read from elsewhere and as outputs the
    tensors others read or the model returns: ``(inputs, outputs, tflite bytes)``."""
    import flatbuffers

    graph = model.subgraphs[0]
    ops_all = range(len(graph.operators))
    const_ops = {k for k in ops_all
                 if all(i < 0 or i in const for i in graph.operators[k].inputs)}
    chosen = set(ops) - const_ops
    needed = {i for k in chosen for i in graph.operators[k].inputs}
    chosen |= {k for k in const_ops if set(graph.operators[k].outputs) & needed}
    chosen_sorted = sorted(chosen)
    produced = {i for k in chosen for i in graph.operators[k].outputs}
    read = {i for k in chosen for i in graph.operators[k].inputs if i >= 0}
    read_elsewhere = {i for k in set(ops_all) - chosen - const_ops
                      for i in graph.operators[k].inputs}
    inputs = sorted(read - produced - const)
    outputs = sorted(produced & (read_elsewhere | set(graph.outputs)))
    sub = copy.copy(graph)
    sub.operators = [graph.operators[k] for k in chosen_sorted]
    sub.inputs = np.array(inputs, np.int32)
    sub.outputs = np.array(outputs, np.int32)
    part = copy.copy(model)
    part.subgraphs = [sub]
    part.signatureDefs = None
    b = flatbuffers.Builder(1 << 20)
    b.Finish(part.Pack(b), file_identifier=b"TFL3")
    return inputs, outputs, bytes(b.Output())


def _output_sources(graph, names: dict[int, str], custom: set[int]) -> dict[str, int]:
    """Model output name -> the tensor holding its values: the output itself, or what the
    final reshape reads."""
    producer = {i: k for k, op in enumerate(graph.operators) for i in op.outputs}
    out = {}
    for i in graph.outputs:
        src = i
        k = producer.get(i)
        if k is not None and k not in custom:
            op = graph.operators[k]
            ins = [j for j in op.inputs if j >= 0]
            if len(ins) >= 1 and producer.get(ins[0]) in custom:
                src = ins[0]
        out[names[i]] = src
    return out


# --- FaceMesh ---------------------------------------------------------------------------------


class FaceMesh:
    """FaceMesh (static images, 478 points, up to MAX_FACES faces) on LiteRT."""

    def __init__(self) -> None:
        self.detector = FaceDetector()  # public: bench/facemesh.py times it alone
        self._mesh = AttentionMesh(load_split_model(mediapipe_model(
            "face_landmark/face_landmark_with_attention.tflite")))
        # The landmark model's inputs, written in place: a fresh 3.5 MB batch a time costs
        # page faults (~0.1 ms a face, more than the crops themselves).
        self._inputs = np.empty((MESH_BATCH, MESH_SIDE, MESH_SIDE, 3), np.float32)

    def landmarks(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """``(points, presence)`` of the landmark model on one ROI: (478, 3) x, y in picture
        pixels, z in the same scale."""
        m = roi_matrix(roi)
        pts, presence = self._mesh(roi_input(rgb, m))
        return _to_picture(pts, m, roi), presence

    def faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Every face's (478, 3) landmarks in picture pixels, as FaceMesh returns them."""
        return self.faces_many([rgb])[0]

    def faces_many(self, pictures: list[np.ndarray]) -> list[list[np.ndarray]]:
        """:meth:`faces` of each picture, the landmark model run on MESH_BATCH faces at a
        time: the same landmarks, sooner (``bench/facemesh.py``: 4.3 ms a CelebA picture in
        chunks of 64 against 5.2 ms one at a time)."""
        found: list[tuple[int, Roi, np.ndarray]] = []  # picture, ROI, its matrix
        for k, rgb in enumerate(pictures):
            for roi in distinct_rois([roi_from_box(b) for b in self.detector(rgb)]):
                found.append((k, roi, roi_matrix(roi)))
        out: list[list[np.ndarray]] = [[] for _ in pictures]
        for start in range(0, len(found), MESH_BATCH):
            batch = found[start:start + MESH_BATCH]
            if len(batch) > len(self._inputs):  # MESH_BATCH raised since this was made
                self._inputs = np.empty((len(batch), *self._inputs.shape[1:]), np.float32)
            xs = self._inputs[:len(batch)]
            for (k, _, m), x in zip(batch, xs, strict=True):
                roi_input(pictures[k], m, out=x)
            pts, presence = self._mesh.run(xs)
            for (k, roi, m), p, ok in zip(batch, pts, presence >= MIN_PRESENCE, strict=True):
                if ok:
                    out[k].append(_to_picture(p, m, roi))
        return out


def _to_picture(pts: np.ndarray, m: np.ndarray, roi: Roi) -> np.ndarray:
    """Landmark-model points (model-input pixels) in the picture's pixels (``m`` the ROI's
    :func:`roi_matrix`); depth in the same scale."""
    out = np.empty_like(pts)
    out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
    out[:, 2] = pts[:, 2] * (roi.size / MESH_SIDE)
    return out


_THREAD = threading.local()


def get_face_mesh() -> FaceMesh:
    """This thread's LiteRT FaceMesh. An interpreter must not run in two threads at once, and a
    Dask worker may run several shards in threads of one process; the generator's own worker
    processes have one thread, so one FaceMesh each."""
    mesh = getattr(_THREAD, "mesh", None)
    if mesh is None:
        mesh = _THREAD.mesh = FaceMesh()
    return mesh
