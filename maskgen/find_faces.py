"""Every face in a real photo, masked or not: :func:`detect_faces`, the cascade ``unmask`` uses.

The generator finds the one face of a picture it masks with :mod:`.landmarks`; this cascade
shares its MediaPipe glue, and is built for photos of people who wear masks already.

FaceMesh's own pipeline fits its mesh only where its short-range detector found a face, and a
mask, sunglasses or a tight crop defeat that detector far more often than the mesh model. So we
choose the region of interest (ROI) ourselves and run the landmark model on it through
MediaPipe's own calculators, without the presence gate, reading the face-presence probability
instead. ROIs come, stage by stage, from the boxes of both MediaPipe face detectors (photo,
padded photo, large photos in tiles), from whole-photo FaceMesh, from the detectors on turned
copies of the photo, and last from the frame itself (tight crops). Each ROI is refined from the
mesh it gives, as MediaPipe's tracking does: a first ROI from a poor box often scores low, and
the refined one high.

The 478-point model's presence score alone is easily fooled once we pick its ROI: on a colour
wheel, a retina or the moon it settles on a "face" with presence 1.0. Where no MediaPipe
detector vouched for the region (the turned-copy and frame stages), a mesh therefore also needs
a second opinion: the 468-point model (a different network, which seldom calls such blobs a
face, but often misses masked ones), or a face detector run on the upright crop that the mesh
implies, finding the eyes where the mesh put them.

A face turned far from its ROI's roll (sideways, upside down) gets a confident but wrong mesh,
a smaller pseudo-face with an eye taken for the mouth; see _fit_face for how that is caught.

Both second models were trained on bare faces and often miss masked faces under caps, hoods
and hair. ``unmask`` therefore lends the cascade its restoring model's mask head as a last
opinion (``mask_opinion``, read in ``training/mask_opinion.py``; this module needs no torch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np

from .colour_balance import BALANCED_COPIES, SEARCHED_COPIES, needs_balance
from .face_evidence import part_of_larger_face, photo_has_colour, upper_face_skin
from .facemesh import MIN_PRESENCE, ROI_SCALE, Roi, quiet_stderr
from .facepoints import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, anchor_points, eye_distance
from .landmarks import (
    Detection,
    NoFace,
    get_detector,
    get_face_detector,
    landmark_array,
    mesh_faces,
)

FACE_STAGES = ("detector", "facemesh", "rotated", "frame")
# The smallest face worth restoring, as the distance between the eye centres in photo pixels.
# unmask aligns a face to a crop whose eye distance is a quarter of its side (32 px for the
# bundled 128 px model): at 12 px a face is already enlarged 2.7 times there, and its restored
# lower face covers some 25 x 20 photo pixels; smaller faces gain nothing a viewer could see,
# and FaceMesh's landmarks on them (enlarged 5 times and more into its 192 px input) are mostly
# guesswork.
MIN_EYE_DISTANCE = 12.0
# Stages whose meshes need a second opinion. The first two mesh where one of MediaPipe's own
# detectors saw a face, and presence after refinement then suffices, as in FaceMesh itself.
CONFIRMED_STAGES = ("rotated", "frame")
# Detector threshold: low, because a false box costs one mesh fit and the checks decide.
DETECT_CONFIDENCE = 0.3
# Padding (fraction of the longer side) around the photo for the detectors: faces cut by the
# frame (chins under a mask, mostly) are found far more often with some room around them.
DETECT_PAD = 0.25
# Turned copies of the photo for the detectors, degrees counter-clockwise on screen. Small turns
# are not needed for the mesh itself: its ROI carries the roll.
ROTATIONS = (30.0, -30.0, 90.0, -90.0)
# Frame ROIs for tight crops: side per longer side of the photo, and roll in degrees.
FRAME_SIZES = (1.0, 1.4)
FRAME_ANGLES = (0.0, 25.0, -25.0, 90.0, -90.0)
# Refinement rounds; a mesh whose anchors still move more than MAX_DRIFT eye distances is
# unstable (a blob the model cannot settle on).
REFINE_STEPS = 3
SETTLED_DRIFT = 0.1
MAX_DRIFT = 0.25
# Second opinions (see above), set on the 300 real masked photos of shared/data against 64
# face-free pictures (scikit-image's, turned and cropped): the plain model's presence (0.5 let a
# coffee cup through); or the best upright-crop detector score whose eyes land within
# UPRIGHT_EYE_ERROR eye distances of the mesh's; a weaker detector score is enough when the mesh
# is also mirror-consistent (fitting the mirrored photo gives the mirrored mesh within
# MIRROR_DRIFT eye distances).
PLAIN_PRESENCE = 0.8
UPRIGHT_SURE = 0.7
UPRIGHT_WEAK = 0.3
UPRIGHT_EYE_ERROR = 0.4
MIRROR_DRIFT = 0.1
# The upright crop for the detectors: side, eye distance and eye height as fractions of it.
UPRIGHT_SIDE = 192
UPRIGHT_IOD = 0.3
UPRIGHT_EYE_Y = 0.42
# A mirror shift this low settles a mesh's orientation (see _fit_face); else a fit at another
# roll, itself settled, replaces it when its ROI is LARGER times as large.
SURE_MIRROR_DRIFT = 0.15
LARGER = 1.1
# A detector box's face fills it: the region read off the fit is at least this share of the
# box's region. Of the fits kept before this rule, 285 of 287 on real-masked-dev filled 0.81
# or more (the two others: pseudo-faces of one eye); on the scenes 5 of 254 filled less: a
# hand, a fit on one eye, and three real faces that another box of theirs still finds.
MIN_FILL = 0.75
# Mesh crops larger than this are shrunk first: the model sees 192 px anyway.
MAX_CROP = 640
# Photos (and tiles) are shrunk to this longer side for the detectors (128 and 192 px inputs).
DETECT_SIDE = 640
# Photos with a longer side of at least this are also searched in overlapping tiles, where the
# full-range detector (192 px input) would miss faces of a few % of the frame.
TILE_FROM = 960
# Smaller photos are searched in tiles of at least this side (a third of the longer side in
# photos over 3 x 144 px): the detectors see a tile at 128 and 192 px, so a face of
# MIN_EYE_DISTANCE (12 px, a face ~30 px wide) fills a fifth of a tile or more, where they find
# it; on the whole of a 256 px scene it is 6 px apart at the short-range detector's input.
SMALL_TILE = 144
# A detector box this sure whose mesh is no face is tried again at a few nearby ROIs: boxes of
# faces under caps and hoods, or looking down, are often too large or too low for the mesh.
RETRY_PRIOR = 0.5
# (scale, shift along the face's own down axis in ROI sides) of those ROIs.
RETRY_ROIS = ((0.8, 0.0), (0.8, -0.2), (1.0, -0.2))


def roi_from_landmarks(pts: np.ndarray, prior: float = 0.0) -> Roi:
    """The ROI MediaPipe's tracking derives from a mesh: roll from the outer eye corners, the
    landmarks' bounding box in the face's own frame, scaled by ROI_SCALE. ``prior`` defaults to
    0, as for any ROI no detector proposed: a sure prior would let a fit skip the evidence
    (SURE_DETECTOR) and earn retries (RETRY_PRIOR) that only a detector's box may."""
    p, q = pts[LEFT_EYE_OUTER, :2], pts[RIGHT_EYE_OUTER, :2]
    angle = math.atan2(q[1] - p[1], q[0] - p[0])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # photo -> face frame
    local = pts[:, :2] @ rot.T
    lo, hi = local.min(0), local.max(0)
    cx, cy = ((lo + hi) / 2) @ rot
    return Roi(float(cx), float(cy), float(ROI_SCALE * (hi - lo).max()), angle, prior)


def _roi_graph_config(attention: bool):
    """FaceLandmarkCpu (mediapipe/modules/face_landmark) without its presence gate: the same
    calculators and models, with the presence probability as a second output."""
    from google.protobuf import text_format

    # Importing these registers their options extensions for the text format parser.
    from mediapipe.calculators.core import split_vector_calculator_pb2  # noqa: F401
    from mediapipe.calculators.tensor import (  # noqa: F401
        image_to_tensor_calculator_pb2,
        inference_calculator_pb2,
        tensors_to_floats_calculator_pb2,
    )
    from mediapipe.framework import calculator_pb2

    split = ("ranges { begin: 0 end: 6 } ranges { begin: 6 end: 7 }" if attention
             else "ranges { begin: 0 end: 1 } ranges { begin: 1 end: 2 }")
    decode = "TensorsToFaceLandmarksWithAttention" if attention else "TensorsToFaceLandmarks"
    text = f"""
input_stream: "IMAGE:image"
input_stream: "ROI:roi"
output_stream: "LANDMARKS:landmarks"
output_stream: "SCORE:score"
node {{
  calculator: "ImageToTensorCalculator"
  input_stream: "IMAGE:image" input_stream: "NORM_RECT:roi"
  output_stream: "TENSORS:input_tensors"
  options {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{
    output_tensor_width: 192 output_tensor_height: 192
    output_tensor_float_range {{ min: 0.0 max: 1.0 }} }} }}
}}
node {{
  calculator: "FaceLandmarksModelLoader"
  input_side_packet: "WITH_ATTENTION:with_attention" output_side_packet: "MODEL:model"
}}
node {{ calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:ops" }}
node {{
  calculator: "InferenceCalculator"
  input_stream: "TENSORS:input_tensors" output_stream: "TENSORS:output_tensors"
  input_side_packet: "MODEL:model" input_side_packet: "OP_RESOLVER:ops"
  options {{ [mediapipe.InferenceCalculatorOptions.ext] {{ delegate {{ xnnpack {{}} }} }} }}
}}
node {{
  calculator: "SplitTensorVectorCalculator"
  input_stream: "output_tensors"
  output_stream: "landmark_tensors" output_stream: "flag_tensor"
  options {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{ {split} }} }}
}}
node {{
  calculator: "TensorsToFloatsCalculator"
  input_stream: "TENSORS:flag_tensor" output_stream: "FLOAT:score"
  options {{ [mediapipe.TensorsToFloatsCalculatorOptions.ext] {{ activation: SIGMOID }} }}
}}
node {{
  calculator: "{decode}"
  input_stream: "TENSORS:landmark_tensors" output_stream: "LANDMARKS:crop_landmarks"
}}
node {{
  calculator: "LandmarkProjectionCalculator"
  input_stream: "NORM_LANDMARKS:crop_landmarks" input_stream: "NORM_RECT:roi"
  output_stream: "NORM_LANDMARKS:landmarks"
}}
"""
    return text_format.Parse(text, calculator_pb2.CalculatorGraphConfig())


class _RoiMesher:
    """FaceMesh's landmark model on an ROI we choose (one graph per process, see
    :func:`get_roi_mesher`)."""

    def __init__(self, attention: bool) -> None:
        import mediapipe as mp
        from mediapipe.python import packet_creator, packet_getter
        from mediapipe.python._framework_bindings import (
            _packet_getter,
            calculator_graph,
            resource_util,
        )

        # The model loader reads the .tflite files relative to this root (as SolutionBase does).
        resource_util.set_resource_dir(os.path.dirname(os.path.dirname(mp.__file__)))
        self._create = packet_creator
        self._out: dict = {}
        self._ts = 0
        self._graph = calculator_graph.CalculatorGraph(graph_config=_roi_graph_config(attention))
        self._graph.observe_output_stream(
            "landmarks",
            lambda _, p: self._out.__setitem__("lm", _packet_getter._get_serialized_proto(p)))
        self._graph.observe_output_stream(
            "score", lambda _, p: self._out.__setitem__("score", packet_getter.get_float(p)))
        with quiet_stderr():
            self._graph.start_run({"with_attention": packet_creator.create_bool(attention)})
            # The first run opens the model and logs from the graph's own threads: wait for it.
            self(np.full((64, 64, 3), 128, np.uint8), Roi(32.0, 32.0, 40.0, 0.0))

    def __call__(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray | None, float]:
        """``(points, presence)``: landmarks in photo pixels (478 rows; 468 for the plain model)
        and the face-presence probability; points are None where the crop is empty."""
        from mediapipe.framework.formats import rect_pb2
        from mediapipe.python._framework_bindings import image_frame

        crop, (ax, bx, ay, by) = _roi_crop(rgb, roi)
        if crop is None:
            return None, 0.0
        cw, ch = crop.shape[1], crop.shape[0]
        rect = rect_pb2.NormalizedRect(
            x_center=(roi.cx - ax) / bx / cw, y_center=(roi.cy - ay) / by / ch,
            width=roi.size / bx / cw, height=roi.size / by / ch, rotation=roi.angle)
        self._ts += 1
        self._out.clear()
        frame = self._create.create_image_frame(image_format=image_frame.ImageFormat.SRGB,
                                                data=crop)
        with quiet_stderr():
            self._graph.add_packet_to_input_stream("image", frame.at(self._ts))
            self._graph.add_packet_to_input_stream("roi", self._create.create_proto(rect).at(
                self._ts))
            self._graph.wait_until_idle()
        if "lm" not in self._out:
            return None, 0.0
        # Normalised to the crop, z in the same unit as x (LandmarkProjectionCalculator).
        pts = landmark_array(self._out["lm"]) * (cw * bx, ch * by, cw * bx)
        pts[:, 0] += ax
        pts[:, 1] += ay
        return pts, float(self._out.get("score", 0.0))


@lru_cache(maxsize=2)
def get_roi_mesher(attention: bool = True) -> _RoiMesher:
    """This process's ROI mesher (``attention``: the 478-point model with irises)."""
    get_detector(True)  # same import checks and log silencing
    return _RoiMesher(attention)


def _roi_crop(rgb: np.ndarray, roi: Roi
              ) -> tuple[np.ndarray | None, tuple[float, float, float, float]]:
    """A square crop holding the ROI at any roll (side 1.5 x ROI > its diagonal), black where
    it leaves the photo, at most MAX_CROP px (only the part inside the photo is shrunk):
    ``(crop, (ax, bx, ay, by))`` where crop pixel ``(u, v)`` is photo pixel
    ``(ax + bx * u, ay + by * v)``, exactly. Cropping keeps each model run cheap in a big
    photo; None when the crop misses the photo."""
    import cv2

    h, w = rgb.shape[:2]
    side = int(math.ceil(roi.size * 1.5)) + 2
    x0, y0 = int(math.floor(roi.cx - side / 2)), int(math.floor(roi.cy - side / 2))
    vx0, vy0 = max(0, x0), max(0, y0)
    inside = rgb[vy0:max(0, min(h, y0 + side)), vx0:max(0, min(w, x0 + side))]
    ch, cw = inside.shape[:2]
    if ch < 2 or cw < 2:
        return None, (0.0, 1.0, 0.0, 1.0)
    out = min(side, MAX_CROP)
    ax, bx, ay, by = 0.0, 1.0, 0.0, 1.0
    if out < side:  # shrink the photo's part only
        inside, ax, bx, ay, by = _downscale(inside, max(1, round(cw * out / side)),
                                            max(1, round(ch * out / side)))
    left, top = round((vx0 - x0) * out / side), round((vy0 - y0) * out / side)
    right, bottom = max(0, out - left - inside.shape[1]), max(0, out - top - inside.shape[0])
    crop = cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_CONSTANT,
                              value=(0, 0, 0)) if top or bottom or left or right else inside
    # crop pixel u is inside's u - left, which is the photo's vx0 + ax + bx * (u - left).
    return np.ascontiguousarray(crop), (vx0 + ax - bx * left, bx, vy0 + ay - by * top, by)



# How much of the lower face that a fit's landmarks imply a mask covers, 0..1, read on the photo
# (``(rgb, points) -> share``): evidence that a fit is a masked face (detect_faces).
MaskOpinion = Callable[[np.ndarray, np.ndarray], float]


class Fit(NamedTuple):
    """One ROI's mesh: ``points`` (None when it is no face), the model's ``presence``, the
    ``reason`` it is no face ("" when it is one), and the second opinions already read on these
    points (``opinions``: name -> score, see :func:`_opinion`), so that the evidence weighed
    later never runs a model on the same fit twice."""

    points: np.ndarray | None
    presence: float
    reason: str
    opinions: dict[str, float]


def _no_fit(presence: float, reason: str) -> Fit:
    return Fit(None, presence, reason, {})


def _fit_mesh(rgb: np.ndarray, roi: Roi, confirm: bool = True, min_iod: float = 0.0,
              mask_opinion: MaskOpinion | None = None) -> Fit:
    """The mesh for one ROI, refined from its own landmarks and checked (eye distance at least
    ``min_iod``; a second opinion when ``confirm``, ``mask_opinion`` among them); points None
    and a reason when there is no face."""
    mesher = get_roi_mesher(True)
    pts, score = mesher(rgb, roi)
    if pts is None:
        return _no_fit(0.0, "empty-crop")
    drift = math.inf
    for step in range(REFINE_STEPS):
        nxt, nscore = mesher(rgb, roi_from_landmarks(pts))
        if nxt is None:
            return _no_fit(0.0, "empty-crop")
        drift = _anchor_shift(nxt, pts)
        # Nothing there at all (twice): stop early, as for most ROIs of a photo without faces.
        give_up = step == 0 and max(score, nscore) < 0.01
        pts, score = nxt, nscore
        if give_up or drift < SETTLED_DRIFT:
            break
    if score < MIN_PRESENCE:
        return _no_fit(score, "not-a-face")
    if drift > MAX_DRIFT:
        return _no_fit(score, "unstable")
    h, w = rgb.shape[:2]
    opinions: dict[str, float] = {}
    why = (implausible(pts, w, h) or ("face-too-small" if eye_distance(pts) < min_iod else "")
           or (_unconfirmed(rgb, pts, opinions, mask_opinion) if confirm else ""))
    return _no_fit(score, why) if why else Fit(pts, score, "", opinions)


def _fit_face(rgb: np.ndarray, roi: Roi, confirm: bool, min_iod: float = 0.0,
              mask_opinion: MaskOpinion | None = None) -> Fit:
    """:func:`_fit_mesh`; and for an unconfirmed stage's mesh that the mirrored photo does not
    reproduce, fits at the ROI turned by a quarter and a half turn too: a turned fit that is
    larger and that the mirrored photo does reproduce replaces it.

    Why: given a face turned far from the ROI's roll (a sideways or upside-down face, whose
    detector keypoints are garbage), the landmark model fits a smaller pseudo-face inside it,
    an eye taken for the mouth, with presence 1.0, and fits it differently in the mirror image;
    at the right roll it fits the whole face, which is larger, the same both ways round.
    """
    fit = _fit_mesh(rgb, roi, confirm, min_iod, mask_opinion)
    if fit.points is None and fit.reason == "not-a-face" and roi.prior >= RETRY_PRIOR:
        fit = _retry_nearby(rgb, roi, confirm, min_iod, fit, mask_opinion)
    if fit.points is None or confirm or _opinion(rgb, fit, "mirror") <= SURE_MIRROR_DRIFT:
        return _inside_the_box(fit, roi)
    size = roi_from_landmarks(fit.points).size
    for turn in (math.pi / 2, -math.pi / 2, math.pi):
        alt = _fit_mesh(rgb, Roi(roi.cx, roi.cy, roi.size, roi.angle + turn), False, min_iod)
        if (alt.points is not None and roi_from_landmarks(alt.points).size > LARGER * size
                and _opinion(rgb, alt, "mirror") <= SURE_MIRROR_DRIFT):
            fit, size = alt, roi_from_landmarks(alt.points).size
    return _inside_the_box(fit, roi)


def _inside_the_box(fit: Fit, roi: Roi) -> Fit:
    """``fit``, or no face when it fills much less of the detector box that proposed it than
    a face does (MIN_FILL): a pseudo-face the model made of one eye and its brow inside a face
    it could not fit whole (seen in tight crops of faces lit blue), or of a hand. Regions no
    detector proposed (prior 0: the frame, a mesh's own region) say nothing about a face's
    size, and a box the detector is sure of (SURE_DETECTOR) holds a face it saw itself: the
    box of a face near profile (scikit-image's cameraman, masked) is wider than its mesh."""
    if (fit.points is not None and 0.0 < roi.prior < SURE_DETECTOR
            and roi_from_landmarks(fit.points).size < MIN_FILL * roi.size):
        return _no_fit(fit.presence, "inside-the-box")
    return fit


def _retry_nearby(rgb: np.ndarray, roi: Roi, confirm: bool, min_iod: float, failed: Fit,
                  mask_opinion: MaskOpinion | None = None) -> Fit:
    """The first fit that is a face among ROIs near a sure detector box whose own ROI gave
    none (RETRY_ROIS: a little smaller, a little higher); ``failed`` when none is."""
    down = np.array([-math.sin(roi.angle), math.cos(roi.angle)])  # the face's down, on screen
    for scale, shift in RETRY_ROIS:
        cx, cy = np.array([roi.cx, roi.cy]) + shift * roi.size * down
        fit = _fit_mesh(rgb, Roi(float(cx), float(cy), roi.size * scale, roi.angle, roi.prior),
                        confirm, min_iod, mask_opinion)
        if fit.points is not None:
            return fit
    return failed


def _anchor_shift(a: np.ndarray, b: np.ndarray) -> float:
    """How far the eye and mouth anchors of two meshes of one face differ, in eye distances."""
    return float(np.abs(anchor_points(a) - anchor_points(b)).max() / max(eye_distance(a), 1e-6))


def _unconfirmed(rgb: np.ndarray, pts: np.ndarray, opinions: dict[str, float],
                 mask_opinion: MaskOpinion | None = None) -> str:
    """"" when a second opinion confirms the face under a mesh, else "unconfirmed" (cheapest
    opinion first: one plain-model run, then two detector runs, then two mesh fits, then the
    mask opinion where it may speak, :func:`_mask_vouches`); the opinions read are left in
    ``opinions``."""
    fit = Fit(pts, 0.0, "", opinions)
    if _opinion(rgb, fit, "plain") >= PLAIN_PRESENCE:
        return ""
    upright = _opinion(rgb, fit, "upright")
    if upright >= UPRIGHT_SURE:
        return ""
    if upright >= UPRIGHT_WEAK and _opinion(rgb, fit, "mirror") <= MIRROR_DRIFT:
        return ""
    if mask_opinion is not None:
        skin = upper_face_skin(rgb, pts) if photo_has_colour(rgb) else math.nan
        if _mask_vouches(rgb, fit, mask_opinion, skin, 0.0):
            return ""
    return "unconfirmed"


def _mask_vouches(rgb: np.ndarray, fit: Fit, mask_opinion: MaskOpinion | None, skin: float,
                  prior: float) -> bool:
    """Whether the mask opinion makes a fit a masked face: it sees a mask over the lower face
    (MASK_SHARE), and it may speak for this fit, one a detector proposed (RETRY_PRIOR) or whose
    upper face shows skin (MASK_SKIN). Why the second condition: on regions nobody proposed,
    the frame's own, the mask head also sees "masks" on a coffee cup and would on a mask lying
    on a table; neither shows skin above it. The opinion read is kept in ``fit.opinions``."""
    if mask_opinion is None or not (prior >= RETRY_PRIOR or skin >= MASK_SKIN):
        return False
    if "mask" not in fit.opinions:
        fit.opinions["mask"] = float(mask_opinion(rgb, fit.points))
    return fit.opinions["mask"] >= MASK_SHARE


def _opinion(rgb: np.ndarray, fit: Fit, name: str) -> float:
    """A second opinion on a fit's points, read once and kept in ``fit.opinions``: "plain" (the
    468-point model's presence at the fit's ROI), "upright" (:func:`_upright_detector_score`)
    or "mirror" (:func:`_mirror_shift`)."""
    if name not in fit.opinions:
        fit.opinions[name] = _OPINIONS[name](rgb, fit.points)
    return fit.opinions[name]


def _plain_presence(rgb: np.ndarray, pts: np.ndarray) -> float:
    """The plain 468-point model's presence at the ROI a mesh implies."""
    return get_roi_mesher(False)(rgb, roi_from_landmarks(pts))[1]


def _upright_detector_score(rgb: np.ndarray, pts: np.ndarray) -> float:
    """The best face-detector score on the upright crop a mesh implies (roll removed, eyes at a
    fixed place and distance) among detections whose eyes land where the mesh's do; 0 if none."""
    import cv2

    left, right, _ = anchor_points(pts)
    iod = float(np.linalg.norm(right - left))
    side, gap = UPRIGHT_SIDE, UPRIGHT_IOD * UPRIGHT_SIDE
    centre = (left + right) / 2
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])),
                                math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])),
                                gap / max(iod, 1e-6))
    m[:, 2] += (side / 2 - centre[0], UPRIGHT_EYE_Y * side - centre[1])
    crop = cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    eyes = np.array([[side / 2 - gap / 2, UPRIGHT_EYE_Y * side],
                     [side / 2 + gap / 2, UPRIGHT_EYE_Y * side]])
    best = 0.0
    for model in (0, 1):
        with quiet_stderr():
            res = get_face_detector(model, 0.1).process(crop)
        for det in res.detections or []:
            kp = det.location_data.relative_keypoints
            found = np.array([[kp[0].x, kp[0].y], [kp[1].x, kp[1].y]]) * side
            if np.linalg.norm(found - eyes, axis=1).max() < UPRIGHT_EYE_ERROR * gap:
                best = max(best, float(det.score[0]))
    return best


def _mirror_shift(rgb: np.ndarray, pts: np.ndarray) -> float:
    """Fit the mirrored photo at the mirrored ROI (one refinement) and mirror the result back:
    how far its anchors land from the mesh's, in eye distances. A face gives the same mesh both
    ways round; a blob that the model talked itself into often does not."""
    h, w = rgb.shape[:2]
    roi = roi_from_landmarks(pts)
    # Mirror only a window around the face (twice the ROI's side: room for its rotation and
    # the refit), not the whole photo: that costs ~160 ms on a 12 Mpx photo, per face.
    half = roi.size
    x0, x1 = max(0, int(roi.cx - half)), min(w, int(math.ceil(roi.cx + half)))
    y0, y1 = max(0, int(roi.cy - half)), min(h, int(math.ceil(roi.cy + half)))
    mirrored = np.ascontiguousarray(rgb[y0:y1, x0:x1][:, ::-1])
    mesher = get_roi_mesher(True)
    # A photo point (x, y) is (x1 - x, y - y0) in the mirrored window.
    back, _ = mesher(mirrored, Roi(x1 - roi.cx, roi.cy - y0, roi.size, -roi.angle))
    if back is None:
        return math.inf
    back, _ = mesher(mirrored, roi_from_landmarks(back))
    if back is None:
        return math.inf
    back = back.copy()
    back[:, 0] = x1 - back[:, 0]
    back[:, 1] += y0
    # Mirroring swaps the subject's eyes; compare anchors as (left, right, mouth).
    return float(np.abs(anchor_points(back)[[1, 0, 2]] - anchor_points(pts)).max()
                 / max(eye_distance(pts), 1e-6))


_OPINIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "plain": _plain_presence, "upright": _upright_detector_score, "mirror": _mirror_shift}


def implausible(pts: np.ndarray, w: int, h: int) -> str:
    """Why a mesh cannot be a face in a ``w`` x ``h`` photo ("" when it can): too small, eyes
    off the photo, mostly outside it, or the eyes and mouth not laid out like a face's (the
    mouth below the eyes in the face's own frame, at a sane distance)."""
    if not np.isfinite(pts).all():
        return "bad-landmarks"
    iod = eye_distance(pts)
    if iod < 4.0:
        return "face-too-small"
    left, right, mouth = anchor_points(pts)
    margin = 0.25 * iod
    for x, y in (left, right):
        if not (-margin <= x <= w + margin and -margin <= y <= h + margin):
            return "eyes-outside"
    inside = ((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)).mean()
    if inside < 0.4:
        return "mostly-outside"
    across = (right - left) / iod
    down = np.array([-across[1], across[0]])  # image y grows downwards
    to_mouth = mouth - (left + right) / 2
    below, aside = float(to_mouth @ down) / iod, float(to_mouth @ across) / iod
    if not (0.4 <= below <= 3.5 and abs(aside) <= 1.5):
        return "bad-layout"
    return ""


class _Shrunk(NamedTuple):
    """A photo shrunk for the detectors; its continuous coordinates (x, y) are the photo's
    ``(ax + bx * x, ay + by * y)``."""

    img: np.ndarray
    ax: float
    bx: float
    ay: float
    by: float


def _shrink(rgb: np.ndarray, longest: float) -> _Shrunk:
    """``rgb`` with its longer side at most ``longest`` (``(rgb, 0, 1, 0, 1)`` if it is)."""
    h, w = rgb.shape[:2]
    k = longest / max(h, w)
    if k >= 1.0:
        return _Shrunk(rgb, 0.0, 1.0, 0.0, 1.0)
    return _Shrunk(*_downscale(rgb, max(1, round(w * k)), max(1, round(h * k))))


def _downscale(img: np.ndarray, width: int, height: int
               ) -> tuple[np.ndarray, float, float, float, float]:
    """``img`` shrunk to ``width`` x ``height`` with anti-aliasing, fast for big factors (halved
    with pyrDown while it can be: an area resize of a 12 Mpx photo costs ~60 ms), and the exact
    map back: ``(small, ax, bx, ay, by)``, small's continuous (x, y) being img's
    ``(ax + bx * x, ay + by * y)``."""
    import cv2

    ax, bx, ay, by = 0.0, 1.0, 0.0, 1.0
    while img.shape[1] >= 2 * width and img.shape[0] >= 2 * height:
        # pyrDown's pixel i is centred on pixel 2i: x = 2 x' - 0.5 in continuous coordinates.
        img = cv2.pyrDown(img)
        ax, bx, ay, by = ax - 0.5 * bx, 2 * bx, ay - 0.5 * by, 2 * by
    if img.shape[1] != width or img.shape[0] != height:
        # Less than halving is left: bilinear barely aliases, and costs a tenth of "area".
        bx, by = bx * img.shape[1] / width, by * img.shape[0] / height
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    return img, ax, bx, ay, by


def _detector_rois(view: _Shrunk, model: int, pad_frac: float = 0.0,
                   degrees: float = 0.0) -> list[Roi]:
    """Face boxes of one MediaPipe detector (``model`` 0 short-range, 1 full-range) as ROIs in
    photo pixels, found on the (shrunk) photo padded by ``pad_frac`` of its longer side and
    turned by ``degrees`` counter-clockwise; the box centres and the roll come back through the
    inverse of that turn. The roll is the detector's eye-to-eye angle, as in MediaPipe's face
    graphs."""
    import cv2

    rgb = view.img
    h, w = rgb.shape[:2]
    pad = round(pad_frac * max(h, w))
    rad = math.radians(degrees)
    cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
    ww, hh = round(w * cos + h * sin) + 2 * pad, round(w * sin + h * cos) + 2 * pad
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += (ww / 2 - w / 2, hh / 2 - h / 2)
    if degrees:
        work = cv2.warpAffine(rgb, m, (ww, hh), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    elif pad:
        work = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    else:
        work = rgb
    with quiet_stderr():
        res = get_face_detector(model, DETECT_CONFIDENCE).process(np.ascontiguousarray(work))
    back = cv2.invertAffineTransform(m)  # turned and padded -> shrunk
    rois = []
    for det in res.detections or []:
        box = det.location_data.relative_bounding_box
        eye_r, eye_l = det.location_data.relative_keypoints[:2]  # image left, image right
        x, y = back @ ((box.xmin + box.width / 2) * ww, (box.ymin + box.height / 2) * hh, 1.0)
        x, y = view.ax + view.bx * x, view.ay + view.by * y
        # A roll of a in the turned copy is a + degrees in the photo (both clockwise on screen).
        roll = math.atan2((eye_l.y - eye_r.y) * hh, (eye_l.x - eye_r.x) * ww) + rad
        size = ROI_SCALE * max(box.width * ww, box.height * hh) * (view.bx + view.by) / 2
        rois.append(Roi(float(x), float(y), float(size), roll, float(det.score[0])))
    return rois


def _tile_rois(rgb: np.ndarray) -> list[Roi]:
    """Both detectors' boxes in overlapping tiles of a photo, so that faces too small for a
    view of the whole photo are found: in a large photo (TILE_FROM) tiles of a third of the
    longer side (at least DETECT_SIDE), shrunk to DETECT_SIDE, find faces down to ~5 % of a
    tile's side; a smaller photo is cut into tiles of a third of its longer side, at least
    SMALL_TILE, which the detectors enlarge to their inputs."""
    longest = max(rgb.shape[:2])
    side = (max(DETECT_SIDE, longest / 3) if longest >= TILE_FROM
            else max(SMALL_TILE, longest / 3))
    k = min(1.0, DETECT_SIDE / side)  # photo -> detector view
    small, ax, bx, ay, by = _shrink(rgb, longest * k)
    tile_side = round(side * k)
    h, w = small.shape[:2]
    rois = []
    for y0 in _tile_starts(h, tile_side):
        for x0 in _tile_starts(w, tile_side):
            tile = _Shrunk(small[y0:y0 + tile_side, x0:x0 + tile_side],
                           ax + bx * x0, bx, ay + by * y0, by)
            rois += _detector_rois(tile, 0) + _detector_rois(tile, 1)
    return rois


def _tile_starts(length: int, tile: int) -> list[int]:
    """Tile origins along one side: ``tile``-long tiles overlapping by at least a quarter."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (0.75 * tile)) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _frame_rois(rgb: np.ndarray) -> list[Roi]:
    """ROIs on the frame itself, for tight crops where no detector finds the face: centred,
    as large as the photo and larger (the face overflows a tight crop), at several rolls."""
    h, w = rgb.shape[:2]
    return [Roi(w / 2, h / 2, k * max(h, w), math.radians(a), 0.0)
            for k in FRAME_SIZES for a in FRAME_ANGLES]


def _stage_passes(stage: str, rgb: np.ndarray) -> list[Callable[[], list[Roi]]]:
    """The passes of one stage of :func:`detect_faces`, each proposing ROIs when called (so a
    photo whose face was found by the first pass pays for no more detector runs)."""
    view = lru_cache(maxsize=1)(partial(_shrink, rgb, DETECT_SIDE))  # shrunk once, if at all
    if stage == "detector":
        # Short-range on the padded photo first: it finds most tight crops on its own.
        passes = [partial(_boxes, view, model, pad)
                  for model, pad in ((0, DETECT_PAD), (0, 0.0), (1, 0.0), (1, DETECT_PAD))]
        if max(rgb.shape[:2]) > SMALL_TILE:
            passes.append(partial(_tile_rois, rgb))
        return passes
    if stage == "facemesh":
        # Prior 0: FaceMesh's own detector found these, but says how sure it was nowhere.
        return [lambda: [roi_from_landmarks(p) for pad in (0.0, DETECT_PAD)
                         for p in mesh_faces(rgb, pad)]]
    if stage == "rotated":
        return [partial(_boxes, view, model, DETECT_PAD, deg)
                for deg in ROTATIONS for model in (0, 1)]
    if stage == "frame":
        return [partial(_frame_rois, rgb)]
    raise ValueError(f"unknown stage {stage!r}")


def _boxes(view: Callable[[], _Shrunk], model: int, pad_frac: float,
           degrees: float = 0.0) -> list[Roi]:
    return _detector_rois(view(), model, pad_frac, degrees)


def _photo_covered(faces: list[Roi], w: int, h: int) -> bool:
    """Whether the ROIs of the faces found fill at least half the photo, leaving no room for
    another face of their size: then a photo need not be searched further."""
    area = 0.0
    for r in faces:
        half = r.size / 2
        area += (max(0.0, min(w, r.cx + half) - max(0.0, r.cx - half))
                 * max(0.0, min(h, r.cy + half) - max(0.0, r.cy - half)))
    return area >= 0.5 * w * h


def _box(pts: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Two meshes of one face: eye midpoints within half an eye distance, or one mesh's box
    mostly inside the other's (a mesh at the wrong scale on a face found right elsewhere)."""
    mid_a, mid_b = anchor_points(a)[:2].mean(0), anchor_points(b)[:2].mean(0)
    iod = max(eye_distance(a), eye_distance(b))
    if float(np.linalg.norm(mid_a - mid_b)) < 0.5 * iod:
        return True
    ax0, ay0, ax1, ay1 = _box(a)
    bx0, by0, bx1, by1 = _box(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return inter > 0.5 * smaller


def _covered(roi: Roi, face: Roi) -> bool:
    """Whether ``roi`` proposes a face already found (its ROI ``face``): same place, similar
    size. Skipping those saves a mesh fit per duplicate box."""
    near = math.hypot(roi.cx - face.cx, roi.cy - face.cy) < 0.35 * face.size
    return near and 0.5 < roi.size / face.size < 2.0


# A region proposed again within a stage (another tile, pass or detector) is not fitted again
# when a region this close, proposed at least as surely, gave no face: centres within this
# share of its side, sides within this ratio, rolls within this many degrees.
REPEAT_SHIFT = 0.1
REPEAT_SIZE = 1.25
REPEAT_ROLL = 10.0


def _repeats(roi: Roi, tried: Roi) -> bool:
    """Whether ``roi`` is one already ``tried`` in its stage (REPEAT_*, and no surer): its mesh
    would start where that one's did and end where it did, a face or none."""
    turn = abs((roi.angle - tried.angle + math.pi) % (2 * math.pi) - math.pi)
    return (math.hypot(roi.cx - tried.cx, roi.cy - tried.cy) < REPEAT_SHIFT * tried.size
            and 1 / REPEAT_SIZE < roi.size / tried.size < REPEAT_SIZE
            and turn < math.radians(REPEAT_ROLL) and roi.prior <= tried.prior)


def detect_faces(rgb: np.ndarray, max_faces: int | None = None,
                 min_eye_distance: float = MIN_EYE_DISTANCE,
                 mask_opinion: MaskOpinion | None = None) -> list[Detection]:
    """Every restorable face in an RGB uint8 photo of any size, largest first (at most
    ``max_faces``): faces whose eyes are at least ``min_eye_distance`` px apart.

    Stages (FACE_STAGES) propose regions in turn: detector boxes (short- and full-range, on the
    photo and padded, and in tiles), whole-photo FaceMesh, detector boxes on turned copies,
    and the frame itself. Every region of a stage gets a refined mesh (a sure detector box
    whose mesh fails is tried at a few nearby regions); a mesh counts when the model scores it
    a face (MIN_PRESENCE), its layout is plausible and its eyes are far enough apart, and in
    the stages no detector vouched for (CONFIRMED_STAGES) when a second opinion confirms it; a
    mesh of doubtful orientation is refit at other rolls (:func:`_fit_face`). One mesh is kept
    per face. Then each face must show evidence of being one (:func:`_weigh_evidence`: skin
    where the upper face is, a second model's or detector's opinion) and must not be a piece
    of a larger face (an ear or cheek of a turned head). The cascade stops after the first
    stage that yields a face, and within a stage after the pass whose faces fill the photo: a
    tight crop of one face costs one detector run and one mesh fit; in a group photo every
    pass runs. A photo where no face was found and whose colour is off (a cast, a washed-out
    channel: :func:`.colour_balance.needs_balance`) is searched again on its grey-world copy,
    and a face found there carries ``("grey-world", 1.0)`` first in its evidence. Each
    Detection carries the scores it was kept on (``evidence``).

    ``mask_opinion`` (optional; ``unmask`` passes its model's mask head) says how much of the
    lower face a fit implies is masked: a fit that the second opinions and evidence above would
    refuse is a face when it sees a mask there, if a detector proposed the fit or its upper
    face shows skin (:func:`_mask_vouches`).

    Raises:
        NoFace: ``no-face`` when no stage finds a face; the detail counts the regions tried
            and why their meshes were rejected.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
    if max_faces is not None and max_faces < 1:
        raise ValueError(f"max_faces must be at least 1, got {max_faces}")
    rejected: dict[str, int] = {}
    kept = _search(rgb, min_eye_distance, rejected, mask_opinion)
    if not kept and needs_balance(rgb):
        # A second look in balanced colour, only where the photo's colour is off: a cast or a
        # washed-out channel (see colour_balance); the copies have the photo's geometry.
        for name, balance in SEARCHED_COPIES:
            kept = [(f, ((name, 1.0), *evidence))
                    for f, evidence in _search(balance(rgb), min_eye_distance, rejected,
                                               mask_opinion)]
            if kept:
                break
    if not kept:
        h, w = rgb.shape[:2]
        tally = ", ".join(f"{n} {why}" for why, n in sorted(rejected.items())) or "none"
        raise NoFace("no-face", f"no face in {w}x{h} px; meshes rejected: {tally}")
    kept.sort(key=lambda k: -float(np.prod(np.ptp(k[0][0].points[:, :2], axis=0))))
    return [Detection(fit.points.astype(np.float32), len(kept), index, FACE_STAGES[index],
                      fit.presence, evidence=evidence)
            for (fit, index, _, _), evidence in kept[:max_faces]]


def _search(rgb: np.ndarray, min_eye_distance: float, rejected: dict[str, int],
            mask_opinion: MaskOpinion | None = None) -> list:
    """The faces of the first stage of :func:`detect_faces` that yields any, as ``((fit, stage
    index, ROI, prior), evidence)``; every mesh rejected is counted in ``rejected`` by reason."""
    found: list[tuple[Fit, int, Roi, float]] = []  # fit, stage, its ROI, the detector's prior
    h, w = rgb.shape[:2]
    colour = photo_has_colour(rgb)
    kept: list = []
    for index, stage in enumerate(FACE_STAGES):
        failed: list[Roi] = []  # this stage's regions that gave no face
        for propose in _stage_passes(stage, rgb):
            for roi in sorted(propose(), key=lambda r: -r.prior):
                if any(_covered(roi, f[2]) for f in found) or any(
                        _repeats(roi, t) for t in failed):
                    continue
                fit = _fit_face(rgb, roi, stage in CONFIRMED_STAGES, min_eye_distance,
                                mask_opinion)
                if fit.points is None:
                    rejected[fit.reason] = rejected.get(fit.reason, 0) + 1
                    failed.append(roi)
                    continue
                face = (fit, index, roi_from_landmarks(fit.points), roi.prior)
                twin = next((i for i, f in enumerate(found)
                             if _same_face(f[0].points, fit.points)), None)
                if twin is None:
                    found.append(face)
                elif fit.presence > found[twin][0].presence:
                    found[twin] = face
            if _photo_covered([f[2] for f in found], w, h):
                break
        for f in _drop_parts(found, rejected):
            why, evidence = _weigh_evidence(rgb, f[0], f[3], colour, mask_opinion)
            if why:
                rejected[why] = rejected.get(why, 0) + 1
            else:
                kept.append((f, evidence))
        if kept:
            break
        found = []
    return kept


# A fit under this share of a larger face's eye distance, with its eyes inside that face's
# landmark box widened by this share of the box (ears and hair), is a piece of that face.
PART_RATIO = 0.7
PART_MARGIN = 0.25


def _drop_parts(found: list, rejected: dict[str, int]) -> list:
    """``found`` less the fits that are pieces of a larger face found (see
    :func:`.face_evidence.part_of_larger_face`), counted in ``rejected``."""
    keep = []
    for f in found:
        if any(part_of_larger_face(f[0].points, g[0].points, PART_RATIO, PART_MARGIN)
               for g in found if g is not f):
            rejected["part-of-a-face"] = rejected.get("part-of-a-face", 0) + 1
        else:
            keep.append(f)
    return keep


def _weigh_evidence(rgb: np.ndarray, fit: Fit, prior: float, colour: bool,
                    mask_opinion: MaskOpinion | None = None
                    ) -> tuple[str, tuple[tuple[str, float], ...]]:
    """``(reason, evidence)``: "" when a fit is a face, else why not, and the scores it was
    judged on, cheapest first, stopping at the first that suffices. A fit is a face when

    - the detector that proposed it was sure (SURE_DETECTOR): it saw a face there itself; or
    - a second model calls it a face: the plain 468-point model's presence (SECOND_OPINION),
      or a face detector on the upright crop the mesh implies, with its eyes where the mesh
      put them (:func:`_upright_detector_score`; UPRIGHT_SURE, or SECOND_OPINION when the
      upper face is mostly skin, SKIN_SHARE); or
    - in a colour photo, the mesh is sure (SURE_PRESENCE), a detector saw something
      (RETRY_PRIOR) and the upper face is mostly skin (SKIN_SHARE; masked faces looking down
      or under caps, which the second models miss); or
    - with a ``mask_opinion``, it sees a mask over the lower face (MASK_SHARE) of a fit that a
      detector proposed (RETRY_PRIOR) or whose upper face shows skin (MASK_SKIN):
      :func:`_mask_vouches`. The masked faces under caps, hoods and hair that the second
      models, trained on bare faces, miss, and whose skin is partly hidden.

    But in a colour photo, a fit whose upper face shows no skin at all (under NO_SKIN, also
    in the photo's colour-balanced copies, :func:`_balanced_skin`) is a face only
    when the plain model is sure of it (SURE_PLAIN): a face shows some skin around its eyes
    even in harsh light, where the plain model still knows it; a round red pictogram had no
    skin and the plain model's 0.89.

    Set on the even-numbered photos of both dev folders: ears, hands, coats, logos, signs and
    textures that the mesh called faces had detector scores of 0.51-0.73, no second opinion
    (but a pictogram), and when their presence was high, little skin. The real faces kept
    with no skin in colour photos (harsh light, dark masks) had plain presences of 0.95-1.0.
    """
    presence, pts = fit.presence, fit.points
    evidence = [("presence", presence), ("detector", prior)]
    if prior >= SURE_DETECTOR:
        return "", _rounded(evidence)
    plain = _opinion(rgb, fit, "plain")
    evidence.append(("plain", plain))
    skin = upper_face_skin(rgb, pts) if colour else math.nan
    if skin < NO_SKIN and (balanced := _balanced_skin(rgb, pts)) < NO_SKIN:
        # No skin where a face, masked or not, shows it, even with the photo's colour cast
        # removed: only the plain model's sure presence outweighs that (faces in harsh
        # light); a round pictogram does not.
        evidence += [("skin", skin), ("balanced-skin", balanced)]
        return ("" if plain >= SURE_PLAIN else "no-skin"), _rounded(evidence)
    if plain >= SECOND_OPINION:
        return "", _rounded(evidence)
    upright = _opinion(rgb, fit, "upright")
    evidence.append(("upright", upright))
    if upright >= UPRIGHT_SURE:
        return "", _rounded(evidence)
    if colour:  # a photo without colour says nothing about skin
        evidence.append(("skin", skin))
        weak_opinion = upright >= SECOND_OPINION and skin >= SKIN_SHARE
        sure_mesh = presence >= SURE_PRESENCE and prior >= RETRY_PRIOR and skin >= SKIN_SHARE
        if weak_opinion or sure_mesh:
            return "", _rounded(evidence)
    # Last, as it costs a restoring model's run: only fits otherwise refused pay for it.
    vouches = _mask_vouches(rgb, fit, mask_opinion, skin, prior)
    if "mask" in fit.opinions:
        evidence.append(("mask", fit.opinions["mask"]))
    return ("" if vouches else "no-evidence"), _rounded(evidence)


def _balanced_skin(rgb: np.ndarray, pts: np.ndarray) -> float:
    """The largest share of skin the upper face of a fit shows in the photo's balanced copies
    (:data:`.colour_balance.BALANCED_COPIES`): a face lit blue shows skin once the cast is
    removed; grey world alone turns a face that fills a warm photo grey."""
    return max(upper_face_skin(balance(rgb), pts) for _, balance in BALANCED_COPIES)


def _rounded(evidence: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    return tuple((k, round(float(v), 3)) for k, v in evidence)


# See _weigh_evidence.
SURE_DETECTOR = 0.8
SECOND_OPINION = 0.5
SURE_PRESENCE = 0.9
SKIN_SHARE = 0.6
NO_SKIN = 0.2
SURE_PLAIN = 0.92
# A mask opinion at least this high (a mask over this share of the lower face, none above the
# eyes) is evidence of a masked face; see training/mask_opinion.py for how it was set.
MASK_SHARE = 0.3
# On a region no detector proposed, the mask opinion speaks only for a fit whose upper face
# shows at least this much skin (upper_face_skin): the masked faces under caps found by the
# frame stage show 0.35-0.85; a mask lying on a white table would show none.
MASK_SKIN = 0.3
