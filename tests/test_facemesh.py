"""FaceMesh's networks on LiteRT (maskgen/facemesh.py) against MediaPipe's own FaceMesh, on real
faces; and the three MediaPipe operators it computes itself, against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared

pytest.importorskip("mediapipe")
pytest.importorskip("ai_edge_litert")

from maskface.maskgen import facemesh  # noqa: E402
from maskface.maskgen.facepoints import eye_distance  # noqa: E402
from maskface.maskgen.landmarks import (  # noqa: E402
    face_mesh_run,
    get_detector,
    landmark_array,
    landmark_runtime,
)


def mediapipe_faces(rgb: np.ndarray) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    return [landmark_array(raw) * (w, h, w) for raw in face_mesh_run(get_detector(True), rgb)]


def assert_same_faces(rgb: np.ndarray) -> int:
    """LiteRT's FaceMesh finds the faces MediaPipe's does, with the same 478 landmarks to a
    small fraction of the eye distance (the runtimes differ in float rounding only)."""
    rgb = np.ascontiguousarray(rgb)
    ours, theirs = facemesh.get_face_mesh().faces(rgb), mediapipe_faces(rgb)
    assert len(ours) == len(theirs)
    for pts in ours:
        ref = min(theirs, key=lambda t: float(np.abs(t - pts).mean()))
        err = np.abs(pts - ref) / eye_distance(ref)
        assert pts.shape == (478, 3)
        assert err[:, :2].mean() < 0.002 and err[:, :2].max() < 0.03, err.max()
        assert err[:, 2].mean() < 0.002 and err[:, 2].max() < 0.03
    return len(ours)


def test_litert_facemesh_matches_mediapipe_on_real_faces(astronaut):
    import cv2

    assert assert_same_faces(astronaut) == 1
    assert assert_same_faces(astronaut[:, ::-1]) == 1
    # Rolled 25 degrees: the ROI's roll, the crops and the maps back all take part.
    m = cv2.getRotationMatrix2D((256, 256), 25, 1.0)
    assert assert_same_faces(cv2.warpAffine(astronaut, m, (512, 512))) == 1
    # Small and off-centre, cut by the frame: letterboxing, edge pixels repeated in the crop.
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    assert assert_same_faces(small[10:, 25:]) == 1
    # Two faces in one picture: both found, both meshed.
    pair = np.concatenate([astronaut[40:300, 100:350], astronaut[40:300, 100:350][:, ::-1]], 1)
    assert assert_same_faces(pair) == 2


def test_threads_get_their_own_networks(astronaut):
    from concurrent.futures import ThreadPoolExecutor

    want = facemesh.get_face_mesh().faces(astronaut)[0]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda _: facemesh.get_face_mesh().faces(astronaut)[0], range(12)))
        meshes = set(pool.map(lambda _: id(facemesh.get_face_mesh()), range(12)))
    assert all(np.array_equal(g, want) for g in got)
    assert id(facemesh.get_face_mesh()) not in meshes


def test_no_face_no_mesh():
    from skimage import data

    for img in (data.coffee(), np.full((200, 300, 3), 90, np.uint8)):
        assert facemesh.get_face_mesh().faces(img) == [] == mediapipe_faces(img)


def test_batches_give_each_face_what_it_gets_alone(astronaut, monkeypatch):
    """The landmark model runs several faces at once (its batch dimension freed in the split):
    every face gets exactly its one-at-a-time landmarks, across batch boundaries, and pictures
    without a face or needing a retry keep their place."""
    import cv2

    from maskface.maskgen.landmarks import NoFace, detect_landmarks, detect_landmarks_many

    monkeypatch.setattr(facemesh, "MESH_BATCH", 3)
    rolled = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 25, 1.0), (512, 512))
    pair = np.concatenate([astronaut[40:300, 100:350], astronaut[40:300, 100:350][:, ::-1]], 1)
    blank = np.full((200, 300, 3), 90, np.uint8)
    # A small face in a big photo: FaceMesh's detector misses it, the box detector does not.
    small = np.full((700, 1100, 3), 90, np.uint8)
    small[100:612, 500:1012] = astronaut
    pictures = [astronaut, pair, blank, rolled, astronaut[:, ::-1].copy(), small, pair]
    fm = facemesh.get_face_mesh()
    many = fm.faces_many(pictures)
    assert [len(f) for f in many] == [1, 2, 0, 1, 1, 0, 2]  # 7 faces: batches of 3, 3, 1
    for rgb, faces in zip(pictures, many, strict=True):
        alone = fm.faces(rgb)
        assert all(np.array_equal(a, b) for a, b in zip(faces, alone, strict=True))
    dets = detect_landmarks_many(pictures)
    assert isinstance(dets[2], NoFace) and dets[2].reason == "no-face"
    assert dets[5].attempt > 0  # found by a retry
    for rgb, det in zip(pictures, dets, strict=True):
        if not isinstance(det, NoFace):
            alone = detect_landmarks(rgb)
            assert np.array_equal(det.points, alone.points)
            assert (det.attempt, det.faces_found, det.found_with) == (
                alone.attempt, alone.faces_found, alone.found_with)
    # A FaceMesh made while batches were smaller takes larger ones later (its input buffer grows).
    fresh = facemesh.FaceMesh()
    monkeypatch.setattr(facemesh, "MESH_BATCH", 8)
    again = fresh.faces_many(pictures)
    assert all(np.array_equal(a, b) for fa, fb in zip(many, again, strict=True)
               for a, b in zip(fa, fb, strict=True))


@needs_shared()
def test_litert_facemesh_matches_mediapipe_on_celeba():
    import cv2

    files = sorted((SHARED_DATA / "celeba-wild").glob("*.jpg"))[::150]
    assert len(files) >= 20
    for f in files:
        assert assert_same_faces(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)) >= 1


def reference_bilinear(features, m, out_h, out_w):
    """TransformTensorBilinear (v2) as its definition reads, one sample at a time."""
    h, w, ch = features.shape
    out = np.zeros((out_h, out_w, ch), np.float64)
    for v in range(out_h):
        for u in range(out_w):
            x = m[0, 0] * (u + 0.5) + m[0, 1] * (v + 0.5) + m[0, 3] - 0.5
            y = m[1, 0] * (u + 0.5) + m[1, 1] * (v + 0.5) + m[1, 3] - 0.5
            if x < 0 or x > w - 1 or y < 0 or y > h - 1:
                continue

            def read(r, c):
                return features[r, c] if 0 <= r < h and 0 <= c < w else 0.0

            x0, y0 = math.floor(x), math.floor(y)
            fx, fy = x - x0, y - y0
            top = (1 - fx) * read(y0, x0) + fx * read(y0, x0 + 1)
            bottom = (1 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1)
            out[v, u] = (1 - fy) * top + fy * bottom
    return out


def test_feature_crop_follows_the_operator_definition():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, 10, 3)).astype(np.float32)
    for angle, scale, shift in ((0.0, 0.7, (1.0, 2.0)), (0.4, 0.9, (3.5, -1.0)),
                                (-1.2, 1.3, (8.0, 6.0)), (0.0, 0.5, (6.5, 9.25))):
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        m = np.eye(4)
        m[:2, :2] = [[c, -s], [s, c]]
        m[:2, 3] = shift
        got = facemesh.transform_tensor_bilinear(features[None], m[None], 6, 5)[0]
        want = reference_bilinear(features.astype(np.float64), m, 6, 5)
        np.testing.assert_allclose(got, want, atol=1e-5)
    # Some samples of the last two crops fall outside: those are exactly zero.
    assert (got == 0).all(axis=2).any() and not (got == 0).all()


def test_crop_matrix_frames_the_region_level():
    """Landmarks2TransformMatrix: the crop is centred on the region, level with the line
    between the two rotation landmarks, scale_x times as wide as the region."""
    rng = np.random.default_rng(1)
    pts = np.zeros((10, 3), np.float32)
    pts[:, :2] = rng.uniform(40, 60, size=(10, 2))
    pts[0, :2], pts[1, :2] = (40, 50), (60, 60)  # the region's roll: atan2(10, 20)
    attrs = {"left_rotation_idx": 0, "right_rotation_idx": 1, "target_rotation_radians": 0.0,
             "subset_idxs": np.arange(10), "scale_x": 1.5, "scale_y": 1.5,
             "output_width": 16, "output_height": 16}
    m = facemesh.transform_matrix(pts[None], attrs)[0].astype(np.float64)
    roll = math.atan2(10, 20)
    np.testing.assert_allclose(math.atan2(m[1, 0], m[0, 0]), roll, atol=1e-5)
    # In the crop's own (level) frame, the region spans 1/1.5 of the crop, centred.
    inv = np.linalg.inv(m)
    local = pts[:, :2] @ inv[:2, :2].T + inv[:2, 3]
    lo, hi = local.min(0), local.max(0)
    np.testing.assert_allclose((lo + hi) / 2, (8, 8), atol=1e-3)
    np.testing.assert_allclose(hi - lo, (16 / 1.5, 16 / 1.5), atol=1e-3)


def test_split_model_is_cached_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = facemesh.mediapipe_model("face_landmark/face_landmark_with_attention.tflite")
    first = facemesh.load_split_model(path)
    (cached,) = (tmp_path / "maskface").glob("*.pickle")

    def same(split):
        return (split.first, split.second, split.outputs, split.second_inputs) == (
            first.first, first.second, first.outputs, first.second_inputs)

    def no_split(_):
        raise AssertionError("split again although the cache holds it")

    with monkeypatch.context() as m:
        m.setattr(facemesh, "split_model", no_split)
        assert same(facemesh.load_split_model(path))
    cached.write_bytes(b"not a pickle")
    assert same(facemesh.load_split_model(path))
    assert cached.stat().st_size > 1_000_000


def test_detect_landmarks_gives_the_same_face_on_either_runtime(astronaut, monkeypatch):
    from maskface.maskgen.landmarks import detect_landmarks

    landmark_runtime.cache_clear()
    try:
        lite_det = detect_landmarks(astronaut)
        landmark_runtime.cache_clear()
        monkeypatch.setenv("MASKFACE_LANDMARK_RUNTIME", "mediapipe")
        mp_det = detect_landmarks(astronaut)
        lite, mp = lite_det.points, mp_det.points
        # Each detection names what found it, for the cache and the manifest.
        assert lite_det.found_with.startswith("FaceMesh of mediapipe 0.10.21 on ai-edge-litert")
        assert mp_det.found_with == "FaceMesh of mediapipe 0.10.21 on its runtime"
    finally:
        monkeypatch.delenv("MASKFACE_LANDMARK_RUNTIME", raising=False)
        landmark_runtime.cache_clear()
    assert not np.array_equal(lite, mp)  # two runtimes really ran
    np.testing.assert_allclose(lite, mp, atol=0.01 * eye_distance(mp))


def test_the_runtime_is_chosen_by_environment(monkeypatch):
    landmark_runtime.cache_clear()
    try:
        assert landmark_runtime() == "litert"
        landmark_runtime.cache_clear()
        monkeypatch.setenv("MASKFACE_LANDMARK_RUNTIME", "mediapipe")
        assert landmark_runtime() == "mediapipe"
        landmark_runtime.cache_clear()
        monkeypatch.setenv("MASKFACE_LANDMARK_RUNTIME", "tensorflow")
        with pytest.raises(RuntimeError, match="litert or mediapipe"):
            landmark_runtime()
    finally:
        monkeypatch.delenv("MASKFACE_LANDMARK_RUNTIME")
        landmark_runtime.cache_clear()
