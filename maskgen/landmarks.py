"""The generator's landmarks: the largest face of a picture, by MediaPipe FaceMesh (478 points),
with retries for hard pictures (padding, upscaling, a face-box pass, the plain mesh).

:func:`detect_landmarks` (and :func:`detect_landmarks_many`, the same for a chunk of pictures) is
what ``generate`` calls; this module also holds the MediaPipe glue that :mod:`.find_faces` (the
real-photo cascade) shares: the FaceMesh and face-detector graphs, and reading their landmarks.
Which landmark is which lives in :mod:`.facepoints`.

MediaPipe is imported lazily, inside :func:`get_detector`, and LiteRT inside :mod:`.facemesh`'s
model loading, so that rendering from a landmark cache and the whole training half work where
neither is installed. One instance of each MediaPipe graph lives in each worker process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .facemesh import quiet_stderr
from .facepoints import LEFT_EYE, NUM_LANDMARKS, NUM_MESH_POINTS, RIGHT_EYE, eye_distance
from .rejection import Rejection

# MediaPipe's graphs miss faces in tiny pictures: those are upscaled to this first.
MIN_DETECT_SIDE = 256
# Attempts in order: "mesh" runs FaceMesh on the picture padded by a fraction of its longer side
# (padding helps faces that touch the frame); "boxes" finds face boxes with MediaPipe's
# full-range detector first and meshes a crop around the largest (small faces in big photos,
# which FaceMesh's own short-range detector misses); "plain-mesh" is FaceMesh without the iris
# model, which sometimes accepts a face the iris model rejects.
ATTEMPTS: tuple[tuple[str, float], ...] = (
    ("mesh", 0.0), ("mesh", 0.25), ("boxes", 0.0), ("mesh", 0.5), ("mesh", 1.0),
    ("plain-mesh", 0.0), ("plain-mesh", 0.25))


class NoFace(Rejection):
    """No usable face in a picture."""


@dataclass(frozen=True)
class Detection:
    """Landmarks of one face, ``(478, 3)`` float32: x, y in pixels of the decoded image, z in
    the same pixel scale (FaceMesh's relative depth); plus how it was found.

    ``attempt`` indexes ATTEMPTS for :func:`detect_landmarks` and ``find_faces.FACE_STAGES``
    for :func:`.find_faces.detect_faces`; ``stage`` names the latter; ``score`` is FaceMesh's
    face-presence probability where it was measured (``detect_faces``), else NaN;
    ``found_with`` names the model and runtime (:func:`runtime_description`; set by
    :func:`detect_landmarks`); ``evidence`` (``detect_faces``) names the scores the face was
    kept on, as ``(name, value)`` pairs (see :func:`.find_faces.detect_faces`).
    """

    points: np.ndarray
    faces_found: int
    attempt: int
    stage: str = ""
    score: float = float("nan")
    found_with: str = ""
    evidence: tuple[tuple[str, float], ...] = ()


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
    with quiet_stderr():
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
    return _detect(rgb, 0)


def detect_landmarks_many(pictures: list[np.ndarray]) -> list[Detection | NoFace]:
    """:func:`detect_landmarks` of each picture (its Detection, or the NoFace it raised). The
    first attempt runs on all of them together (on LiteRT the landmark model takes several
    faces at once, see ``FaceMesh.faces_many``); the retries, for the few it misses, one by one.
    The results are the same as one at a time."""
    how, pad_frac = ATTEMPTS[0]
    inputs = [_attempt_input(rgb, how) for rgb in pictures]
    found = mesh_faces_many([img for img, _ in inputs], pad_frac, refine=how == "mesh")
    out: list[Detection | NoFace] = []
    for rgb, (img, scale), faces in zip(pictures, inputs, found, strict=True):
        try:
            if faces:
                out.append(_found(rgb, _largest(faces), scale, len(faces), 0, how))
            else:
                out.append(_detect(rgb, 1, upscaled=None if img is rgb else img))
        except NoFace as e:
            out.append(e)
    return out


def _upscale(rgb: np.ndarray) -> float:
    """How much a picture is enlarged before MediaPipe's graphs see it: its shorter side to
    MIN_DETECT_SIDE."""
    return max(1.0, MIN_DETECT_SIDE / min(rgb.shape[:2]))


def _upscaled(rgb: np.ndarray) -> np.ndarray:
    """The picture enlarged by :func:`_upscale` (bicubic)."""
    up = _upscale(rgb)
    if up == 1.0:
        return rgb
    import cv2

    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (round(w * up), round(h * up)), interpolation=cv2.INTER_CUBIC)


def _attempt_input(rgb: np.ndarray, how: str, upscaled: np.ndarray | None = None
                   ) -> tuple[np.ndarray, float]:
    """``(image, scale)``: the picture an attempt of ATTEMPTS runs on, ``scale`` times as large
    as ``rgb``. MediaPipe's graphs miss faces in tiny pictures, so they get it :func:`_upscaled`
    (``upscaled``, when already made); the mesh on LiteRT resamples the picture itself into its
    detector's and landmark model's inputs, which needs no upscaling first (and saves ~0.3 ms a
    CelebA face)."""
    if how == "mesh" and landmark_runtime() == "litert":
        return rgb, 1.0
    return (_upscaled(rgb) if upscaled is None else upscaled), _upscale(rgb)


def _detect(rgb: np.ndarray, start: int, upscaled: np.ndarray | None = None) -> Detection:
    """ATTEMPTS from ``start`` on (``upscaled``: the :func:`_upscaled` picture, when already
    made; it is made once, for the first attempt that needs it)."""
    h, w = rgb.shape[:2]
    for attempt, (how, pad_frac) in enumerate(ATTEMPTS[start:], start):
        img, scale = _attempt_input(rgb, how, upscaled)
        if img is not rgb:
            upscaled = img
        if how == "boxes":
            pts, n = _run_on_boxes(img)
        else:
            pts, n = largest_mesh(img, pad_frac, refine=how == "mesh")
        if pts is not None:
            return _found(rgb, pts, scale, n, attempt, how)
    raise NoFace("no-face", f"no face found in {w}x{h} px after {len(ATTEMPTS)} tries "
                            "(FaceMesh with padding, full-range face detector)")


def _found(rgb: np.ndarray, pts: np.ndarray, scale: float, n: int, attempt: int, how: str
           ) -> Detection:
    """The Detection of landmarks ``pts`` found in a picture ``scale`` times as large as
    ``rgb`` (checked, in ``rgb``'s pixels)."""
    h, w = rgb.shape[:2]
    if pts.shape[0] == NUM_MESH_POINTS:
        pts = _with_estimated_irises(pts)
    if scale != 1.0:
        pts = pts / np.float32(scale)
    _check(pts, w, h)
    return Detection(pts.astype(np.float32), n, attempt,
                     found_with=runtime_description(plain=how == "plain-mesh"))


def get_box_detector():
    """This process's MediaPipe full-range face detector (faces down to a few % of the frame)."""
    return get_face_detector(1, 0.4)


@lru_cache(maxsize=8)
def get_face_detector(model_selection: int, min_confidence: float):
    """This process's MediaPipe face detector: ``model_selection`` 0 is the short-range model
    (faces filling much of a 128 px input), 1 the full-range one (192 px, small faces too)."""
    get_detector(True)  # same import checks and log silencing
    import mediapipe as mp

    with quiet_stderr():
        return mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence)


def _run_on_boxes(img: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Find face boxes, then mesh a square crop of twice the largest box around it."""
    h, w = img.shape[:2]
    with quiet_stderr():
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
        pts, _ = largest_mesh(crop, pad_frac)
        if pts is not None:
            pts = pts / scale
            pts[:, 0] += max(0, x0)
            pts[:, 1] += max(0, y0)
            return pts, len(boxes)
    return None, len(boxes)


def largest_mesh(img: np.ndarray, pad_frac: float, refine: bool = True
                 ) -> tuple[np.ndarray | None, int]:
    """The largest face FaceMesh finds in ``img`` padded by ``pad_frac``, and how many."""
    faces = mesh_faces(img, pad_frac, refine)
    if not faces:
        return None, 0
    return _largest(faces), len(faces)


def _largest(faces: list[np.ndarray]) -> np.ndarray:
    """The face whose landmarks span the largest box."""
    if len(faces) == 1:
        return faces[0]
    areas = [float(np.prod(np.ptp(a[:, :2], axis=0))) for a in faces]
    return faces[int(np.argmax(areas))]


def mesh_faces(img: np.ndarray, pad_frac: float, refine: bool = True) -> list[np.ndarray]:
    """Every face whole-image FaceMesh finds (up to 4) in ``img`` padded by ``pad_frac`` of its
    longer side, in ``img``'s pixels."""
    return mesh_faces_many([img], pad_frac, refine)[0]


def mesh_faces_many(images: list[np.ndarray], pad_frac: float, refine: bool = True
                     ) -> list[list[np.ndarray]]:
    """:func:`mesh_faces` of each image; on LiteRT, with the landmark model on several faces
    at once."""
    import cv2

    works, pads = [], []
    for img in images:
        pad = round(pad_frac * max(img.shape[:2]))
        if pad:
            img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                     value=(0, 0, 0))
        works.append(np.ascontiguousarray(img))
        pads.append(pad)
    if refine and landmark_runtime() == "litert":
        from .facemesh import get_face_mesh

        found = get_face_mesh().faces_many(works)
    else:
        found = []
        for work in works:
            with quiet_stderr():  # MediaPipe's C++ warns on new input shapes, straight to fd 2
                faces = face_mesh_run(get_detector(refine), work)
            hh, ww = work.shape[:2]
            found.append([landmark_array(raw) * np.array([ww, hh, ww], np.float64)
                          for raw in faces])
    for pad, faces in zip(pads, found, strict=True):
        for a in faces:
            a[:, :2] -= pad
    return found


@lru_cache(maxsize=1)
def landmark_runtime() -> str:
    """What runs FaceMesh for :func:`detect_landmarks`: ``litert`` (its networks on the LiteRT
    runtime, see :mod:`.facemesh`; faster, and workers need not load MediaPipe) where
    ai-edge-litert is installed, else ``mediapipe``. ``MASKFACE_LANDMARK_RUNTIME`` chooses one
    explicitly. Both give the same landmarks to ~0.03 % of the eye distance (median) on the
    same input; MediaPipe's gets pictures under MIN_DETECT_SIDE upscaled first; the other
    passes (face boxes, the plain mesh, :func:`.find_faces.detect_faces`) always use MediaPipe."""
    from .facemesh import litert_available

    want = os.environ.get("MASKFACE_LANDMARK_RUNTIME", "").strip().lower()
    if want not in ("", "litert", "mediapipe"):
        raise RuntimeError(f"MASKFACE_LANDMARK_RUNTIME must be litert or mediapipe, not {want!r}")
    if want == "litert" and not litert_available():
        raise RuntimeError("MASKFACE_LANDMARK_RUNTIME=litert needs ai-edge-litert: "
                           "pip install 'maskface[landmarks]'")
    return want or ("litert" if litert_available() else "mediapipe")


def runtime_description(plain: bool = False) -> str:
    """What finds the generator's landmarks, with versions, as the landmark cache and the
    manifest record it (shards made with the two runtimes differ by a hair). ``plain``: the
    plain-mesh retry, which always runs on MediaPipe and estimates the irises."""
    return _describe("mediapipe" if plain else landmark_runtime(), plain)


@lru_cache(maxsize=4)
def _describe(runtime: str, plain: bool) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    model = "FaceMesh (468 points, irises estimated)" if plain else "FaceMesh"
    runner = "ai-edge-litert " + ver("ai-edge-litert") if runtime == "litert" else "its runtime"
    return f"{model} of mediapipe {ver('mediapipe')} on {runner}"


def face_mesh_run(fm, rgb: np.ndarray) -> list[bytes]:
    """One image through a FaceMesh solution's graph: each face's landmarks as a serialised
    NormalizedLandmarkList.

    ``FaceMesh.process`` builds a namedtuple class and Python protobuf objects on every call,
    about 0.3 ms of a ~5.5 ms face; this feeds its graph directly and reads the bytes. It uses
    SolutionBase internals, which is safe only because mediapipe is pinned (0.10.21); anything
    else takes the public path."""
    from mediapipe.python import packet_creator
    from mediapipe.python._framework_bindings import _packet_getter, image_frame

    graph = getattr(fm, "_graph", None)
    outputs = getattr(fm, "_graph_outputs", None)
    if graph is None or not isinstance(outputs, dict) or not hasattr(fm, "_simulated_timestamp"):
        res = fm.process(rgb)
        return [f.SerializeToString() for f in res.multi_face_landmarks or []]
    outputs.clear()
    fm._simulated_timestamp += 33333  # the timestamps must grow, as in process()
    frame = packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB, data=rgb)
    graph.add_packet_to_input_stream(stream="image", packet=frame.at(fm._simulated_timestamp))
    graph.wait_until_idle()
    packet = outputs.get("multi_face_landmarks")
    if packet is None or packet.is_empty():  # no face: the graph may send an empty packet
        return []
    return list(_packet_getter._get_serialized_proto_list(packet))


# A NormalizedLandmark with x, y, z set serialises to 17 bytes: the list field's tag and length,
# then three float fields, each a tag byte and 4 little-endian bytes.
_LANDMARK_RECORD = np.dtype([("head", "u1", 3), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                             ("tz", "u1"), ("z", "<f4")])
_HEAD = np.array([0x0A, 0x0F, 0x0D], np.uint8)


def landmark_array(raw: bytes) -> np.ndarray:
    """(N, 3) normalised x, y, z of a serialised NormalizedLandmarkList.

    Reading 478 protobuf messages attribute by attribute costs ~0.35 ms a face; decoding the
    bytes with one numpy view costs ~20 us. The layout is checked record by record, and anything
    unexpected (e.g. visibility fields) takes the slow, general path.
    """
    if len(raw) % 17 == 0:
        rec = np.frombuffer(raw, _LANDMARK_RECORD)
        if ((rec["head"] == _HEAD).all() and (rec["ty"] == 0x15).all()
                and (rec["tz"] == 0x1D).all()):
            return np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float64)
    from mediapipe.framework.formats import landmark_pb2

    face = landmark_pb2.NormalizedLandmarkList.FromString(raw)
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
    """Raise NoFace unless ``pts`` is a whole, finite mesh of a face big enough to mask, centred
    near a ``w`` x ``h`` picture."""
    if pts.shape != (NUM_LANDMARKS, 3) or not np.isfinite(pts).all():
        raise NoFace("bad-landmarks", f"mesh of shape {pts.shape} with non-finite values")
    iod = eye_distance(pts)
    if iod < 4.0:
        raise NoFace("face-too-small", f"eyes {iod:.1f} px apart")
    cx, cy = (pts[:, :2].sum(0) / len(pts)).tolist()
    if not (-0.25 * w <= cx <= 1.25 * w and -0.25 * h <= cy <= 1.25 * h):
        raise NoFace("bad-landmarks", "face centre far outside the picture")
