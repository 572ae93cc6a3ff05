"""Real MediaPipe FaceMesh on real faces that scikit-image ships (and, for detect_faces, on the
real masked photos of ../shared/data when it is there)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from maskface.maskgen.facepoints import FACE_OVAL, anchor_points, eye_distance
from maskface.maskgen.find_faces import (
    SECOND_OPINION,
    SURE_DETECTOR,
    detect_faces,
    roi_from_landmarks,
)
from maskface.maskgen.landmarks import NoFace, detect_landmarks
from maskface.maskgen.pose import head_pose

pytest.importorskip("mediapipe")

# Eileen Collins' eyes and mouth in skimage's astronaut.png, located by hand (+-8 px).
ASTRONAUT_ANCHORS = np.array([(203, 101), (247, 104), (223, 140)], np.float32)


def test_astronaut_landmarks_land_on_her_face(astronaut):
    det = detect_landmarks(astronaut)
    assert det.points.shape == (478, 3) and det.faces_found == 1
    np.testing.assert_allclose(anchor_points(det.points), ASTRONAUT_ANCHORS, atol=8)
    pose = head_pose(det.points)
    assert abs(pose["yaw"]) < 12 and abs(pose["roll"]) < 8


def test_the_graph_shortcut_reads_what_the_public_api_returns(astronaut):
    """FaceMesh runs through its graph and its landmarks are decoded from bytes (a shortcut
    for the pinned MediaPipe); anything without that graph takes FaceMesh.process. Both paths,
    and both decoders, must give the same landmarks."""
    from mediapipe.framework.formats import landmark_pb2

    from maskface.maskgen.landmarks import face_mesh_run, get_detector, landmark_array

    fm = get_detector(True)

    class PublicOnly:
        def process(self, rgb):
            return fm.process(rgb)

    img = np.ascontiguousarray(astronaut)
    fast, public = face_mesh_run(fm, img), face_mesh_run(PublicOnly(), img)
    assert len(fast) == len(public) == 1
    points = landmark_array(fast[0])
    np.testing.assert_array_equal(points, landmark_array(public[0]))
    parsed = landmark_pb2.NormalizedLandmarkList.FromString(fast[0]).landmark
    assert points.shape == (478, 3)
    np.testing.assert_allclose(points, [(p.x, p.y, p.z) for p in parsed], rtol=1e-6)


def test_pose_follows_mirroring_and_rotation(astronaut):
    import cv2

    base = head_pose(detect_landmarks(astronaut).points)
    mirrored = head_pose(detect_landmarks(np.ascontiguousarray(astronaut[:, ::-1])).points)
    assert mirrored["roll"] == pytest.approx(-base["roll"], abs=2)
    m = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    turned = head_pose(detect_landmarks(cv2.warpAffine(astronaut, m, (512, 512))).points)
    assert turned["roll"] - base["roll"] == pytest.approx(-20, abs=3)


def test_face_cut_by_the_frame_is_found_with_padding(astronaut):
    tight = np.ascontiguousarray(astronaut[60:170, 170:280])  # the face fills the picture
    det = detect_landmarks(tight)
    left_eye, right_eye, _ = anchor_points(det.points)
    np.testing.assert_allclose(left_eye, (203 - 170, 101 - 60), atol=10)


def test_largest_of_two_faces_is_taken(astronaut):
    import cv2

    face = astronaut[30:250, 110:330]  # her head and shoulders, 220 px
    canvas = np.full((340, 640, 3), 90, np.uint8)
    canvas[10:330, 300:620] = cv2.resize(face, (320, 320), interpolation=cv2.INTER_CUBIC)
    canvas[100:300, 20:220] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_AREA)
    det = detect_landmarks(canvas)
    assert det.faces_found == 2
    assert anchor_points(det.points)[0][0] > 300  # the big face on the right


def test_small_face_in_a_big_photo_is_found(astronaut):
    """FaceMesh alone misses a face that fills ~10 % of the frame; the box detector does not."""
    canvas = np.full((700, 1100, 3), 90, np.uint8)
    canvas[100:612, 500:1012] = astronaut
    det = detect_landmarks(canvas)
    np.testing.assert_allclose(anchor_points(det.points)[0], (203 + 500, 101 + 100), atol=10)


def test_no_face_is_a_named_failure():
    from skimage import data

    with pytest.raises(NoFace) as e:
        detect_landmarks(data.coffee())
    assert e.value.reason == "no-face"


# --- detect_faces -----------------------------------------------------------------------------


def _masked(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut with a flat dark "mask" over her face below the nose bridge."""
    import cv2

    pts = detect_landmarks(astronaut).points
    oval = pts[list(FACE_OVAL), :2]
    lower = np.concatenate([oval[oval[:, 1] > pts[6, 1]], pts[[234, 454], :2]])
    out = astronaut.copy()
    cv2.fillConvexPoly(out, cv2.convexHull(lower.astype(np.int32)), (40, 40, 45))
    return out


def test_detect_faces_agrees_with_detect_landmarks_on_a_plain_face(astronaut):
    (det,) = detect_faces(astronaut)
    assert det.points.shape == (478, 3) and det.points.dtype == np.float32
    assert det.faces_found == 1 and det.stage == "detector" and det.score > 0.9
    np.testing.assert_allclose(anchor_points(det.points), ASTRONAUT_ANCHORS, atol=8)
    # Same model, our own region of interest: the landmarks agree with FaceMesh's, z included.
    ref = detect_landmarks(astronaut).points
    np.testing.assert_allclose(det.points, ref, atol=4)


def test_two_faces_side_by_side_are_both_found_largest_first(astronaut):
    import cv2

    head = astronaut[30:250, 110:330]  # her head and shoulders, 220 px
    photo = np.full((300, 620, 3), 200, np.uint8)
    photo[40:260, 20:240] = head[:, ::-1]  # mirrored on the left
    photo[10:290, 320:600] = cv2.resize(head, (280, 280), interpolation=cv2.INTER_CUBIC)
    dets = detect_faces(photo)
    assert len(dets) == 2 and all(d.faces_found == 2 for d in dets)
    big, small = (anchor_points(d.points) for d in dets)
    k = 280 / 220  # the right copy's scale
    np.testing.assert_allclose(big, (ASTRONAUT_ANCHORS - (110, 30)) * k + (320, 10), atol=10)
    mirrored = ASTRONAUT_ANCHORS[[1, 0, 2]].copy()  # mirroring swaps the image-left/right eyes
    mirrored[:, 0] = 330 - mirrored[:, 0]  # x in the head crop, mirrored (it spans 110..330)
    mirrored[:, 1] -= 30
    np.testing.assert_allclose(small, mirrored + (20, 40), atol=8)
    (only,) = detect_faces(photo, max_faces=1)
    assert only.faces_found == 2
    np.testing.assert_allclose(anchor_points(only.points), big, atol=1)


def test_every_face_of_a_wide_group_photo_is_found(astronaut):
    """Three faces, one masked, each a few % of a 1400 px photo (found in tiles)."""
    import cv2

    photo = np.full((900, 1400, 3), 150, np.uint8)
    photo[50:330, 50:330] = cv2.resize(_masked(astronaut)[20:300, 90:370], (280, 280))
    photo[450:670, 600:820] = astronaut[30:250, 110:330][:, ::-1]
    photo[600:856, 1100:1356] = astronaut[::2, ::2]
    dets = detect_faces(photo)
    assert len(dets) == 3
    eyes = sorted(tuple(anchor_points(d.points)[0].round()) for d in dets)
    np.testing.assert_allclose(eyes[0], (ASTRONAUT_ANCHORS[0] - (90, 20)) + (50, 50), atol=8)
    np.testing.assert_allclose(eyes[2], ASTRONAUT_ANCHORS[0] / 2 + (1100, 600), atol=6)


FACE_FREE = ["coffee", "brick", "flat", "chelsea", "rocket", "coins", "text", "hubble_deep_field",
             "colorwheel", "retina", "moon", "page", "grass", "gravel", "logo"]


@pytest.mark.parametrize("picture", FACE_FREE)
def test_a_photo_without_a_face_raises_no_face(picture):
    """scikit-image's pictures without a face (a cat, a logo, text, textures, a rocket): no
    false face, whatever the mesh model makes of them."""
    from skimage import data

    img = np.full((240, 320, 3), 128, np.uint8) if picture == "flat" else getattr(data, picture)()
    img = img[..., :3] if img.ndim == 3 else np.repeat(img[..., None], 3, 2)
    img = np.ascontiguousarray(img.astype(np.uint8))
    with pytest.raises(NoFace) as e:
        detect_faces(img)
    assert e.value.reason == "no-face" and "meshes rejected" in e.value.detail


def test_a_face_under_the_smallest_restorable_size_is_not_returned(astronaut):
    import cv2

    from maskface.maskgen.find_faces import MIN_EYE_DISTANCE

    # The astronaut's eyes are 44 px apart; at a fifth of her size, 9 px: under 12 px.
    small = cv2.resize(astronaut, (102, 102), interpolation=cv2.INTER_AREA)
    photo = np.full((256, 256, 3), 120, np.uint8)
    photo[80:182, 80:182] = small
    with pytest.raises(NoFace) as e:
        detect_faces(photo)
    assert "face-too-small" in e.value.detail
    (det,) = detect_faces(photo, min_eye_distance=4.0)
    assert eye_distance(det.points) < MIN_EYE_DISTANCE


def test_each_face_says_what_it_was_kept_on(astronaut):
    (det,) = detect_faces(astronaut)
    evidence = dict(det.evidence)
    assert evidence["presence"] > 0.9
    # The detector is not sure of the astronaut by itself, so the evidence goes on to the plain
    # model, whose second opinion keeps her.
    assert evidence["detector"] < SURE_DETECTOR and evidence["plain"] >= SECOND_OPINION


def test_a_small_fit_beside_a_larger_face_is_a_piece_of_it(astronaut):
    """An ear or cheek of a turned head fitted as a face: a smaller fit whose eyes lie within
    the larger face's box (widened for ears and hair) belongs to it; one beside the box, or of
    a similar size, is a face of its own."""
    from maskface.maskgen.face_evidence import part_of_larger_face

    big = detect_landmarks(astronaut).points.astype(np.float64)
    lo, hi = big[:, :2].min(0), big[:, :2].max(0)
    centre = anchor_points(big)[:2].mean(0)

    def shrunk_at(where: np.ndarray, k: float) -> np.ndarray:
        small = big.copy()
        small[:, :2] = (big[:, :2] - centre) * k + where
        return small

    ear = np.array([hi[0] + 0.1 * (hi[0] - lo[0]), centre[1] + 10])  # just right of the box
    assert part_of_larger_face(shrunk_at(ear, 0.3), big, 0.7, 0.25)
    far = np.array([hi[0] + 1.5 * (hi[0] - lo[0]), centre[1]])
    assert not part_of_larger_face(shrunk_at(far, 0.3), big, 0.7, 0.25)
    assert not part_of_larger_face(shrunk_at(ear, 0.9), big, 0.7, 0.25)  # a face next to hers


def test_masked_face_with_the_chin_cut_by_the_frame_is_found(astronaut):
    crop = np.ascontiguousarray(_masked(astronaut)[40:160, 160:290])  # chin below the frame
    (det,) = detect_faces(crop)
    np.testing.assert_allclose(anchor_points(det.points)[:2], ASTRONAUT_ANCHORS[:2] - (160, 40),
                               atol=8)
    assert det.points[:, 1].max() > crop.shape[0]  # the jaw line runs on below the frame


def test_a_face_turned_sideways_is_found_with_its_roll(astronaut):
    import cv2

    turn = cv2.getRotationMatrix2D((225.0, 120.0), 90, 1.0)  # a quarter turn, anticlockwise
    photo = cv2.warpAffine(astronaut, turn, (512, 512))
    (det,) = detect_faces(photo)
    expected = np.c_[ASTRONAUT_ANCHORS, np.ones(3)] @ turn.T
    np.testing.assert_allclose(anchor_points(det.points), expected, atol=10)
    assert np.degrees(roi_from_landmarks(det.points).angle) == pytest.approx(-90, abs=12)


def test_each_fit_is_scored_by_the_plain_model_once(astronaut, monkeypatch):
    """A fit of a turned face is confirmed by a second opinion, then weighed as evidence: the
    plain model reads each fit once (the evidence reuses the confirmation's score), so no ROI
    reaches it twice."""
    import cv2

    from maskface.maskgen import find_faces

    plain = find_faces.get_roi_mesher(False)
    seen: list[tuple] = []
    run = type(plain).__call__

    def counted(self, rgb, roi):
        if self is plain:
            seen.append((roi.cx, roi.cy, roi.size, roi.angle))
        return run(self, rgb, roi)

    monkeypatch.setattr(type(plain), "__call__", counted)
    turn = cv2.getRotationMatrix2D((225.0, 120.0), 90, 1.0)
    (det,) = detect_faces(cv2.warpAffine(astronaut, turn, (512, 512)))
    assert seen, "the plain model gave no opinion: nothing was checked"
    assert len(seen) == len(set(seen))
    assert dict(det.evidence)["plain"] >= SECOND_OPINION


def test_a_region_read_off_a_mesh_claims_no_detector(astronaut):
    """A region derived from landmarks has no detector's confidence unless one is given: a
    sure prior would skip the evidence a fit must show."""
    pts = detect_landmarks(astronaut).points
    assert roi_from_landmarks(pts).prior == 0.0
    assert roi_from_landmarks(pts, 0.7).prior == 0.7


def test_points_map_back_exactly_from_a_big_photo(astronaut):
    """A face in a large photo is meshed on a shrunk crop; the points come back to within a
    pixel of the same face's points at the original size."""
    import cv2

    base = anchor_points(detect_faces(astronaut)[0].points)
    photo = np.full((1700, 2600, 3), 90, np.uint8)
    photo[300:, 900:900 + 1536] = cv2.resize(astronaut, (1536, 1536),
                                            interpolation=cv2.INTER_CUBIC)[:1400]
    (det,) = detect_faces(photo)
    np.testing.assert_allclose((anchor_points(det.points) - (900, 300)) / 3, base, atol=1.5)


def test_layout_checks_reject_a_mesh_upside_down_in_its_own_frame(astronaut):
    from maskface.maskgen.find_faces import implausible

    pts = detect_landmarks(astronaut).points.astype(np.float64)
    assert implausible(pts, 512, 512) == ""
    swapped = pts.copy()
    swapped[:, 1] = 2 * 140 - swapped[:, 1]  # mirrored top to bottom: mouth above the eyes
    assert implausible(swapped, 512, 512) == "bad-layout"
    assert implausible(pts + (450, 0, 0), 512, 512) == "eyes-outside"
    assert implausible(pts * (0.05, 0.05, 1), 512, 512) == "face-too-small"


REAL_MASKED = SHARED_DATA / "real-masked-dev"


@pytest.mark.shared
@pytest.mark.skipif(not REAL_MASKED.is_dir(), reason=f"needs {REAL_MASKED} (absent)")
def test_real_masked_photos_are_found():
    """Every tenth of the real masked photos (30): the face is found, one per photo."""
    from maskface.maskgen.decode import decode_image

    photos = sorted(REAL_MASKED.glob("*.jpg"))[::10]
    assert photos, f"no photos in {REAL_MASKED}"
    found = 0
    for path in photos:
        try:
            dets = detect_faces(decode_image(path.read_bytes()))
        except NoFace:
            continue
        found += 1
        assert len(dets) == 1
    assert found >= 0.9 * len(photos)


def test_a_region_proposed_again_in_a_stage_is_not_fitted_again(astronaut, monkeypatch):
    """Tiles, passes and both detectors often propose one region several times: a region
    close to one that already gave no face is not fitted again, unless it is proposed more
    surely (a sure box earns retries and skips the evidence)."""
    from maskface.maskgen import find_faces
    from maskface.maskgen.facemesh import Roi

    suit = Roi(120.0, 420.0, 150.0, 0.0, 0.6)  # on the astronaut's suit, far from her face
    again = Roi(124.0, 417.0, 140.0, 0.05, 0.55)
    surer = Roi(120.0, 420.0, 150.0, 0.0, 0.9)
    passes = {"detector": [lambda: [suit], lambda: [again, surer]]}
    monkeypatch.setattr(find_faces, "_stage_passes", lambda stage, rgb: passes.get(stage, []))
    fitted = []
    fit = find_faces._fit_face
    monkeypatch.setattr(find_faces, "_fit_face",
                        lambda rgb, roi, *args: fitted.append(roi) or fit(rgb, roi, *args))
    with pytest.raises(NoFace):
        detect_faces(astronaut)
    assert fitted == [suit, surer]


REAL_SCENES = SHARED_DATA / "real-masked-scenes-dev"


@pytest.mark.shared
@pytest.mark.skipif(not REAL_MASKED.is_dir(), reason=f"needs {REAL_MASKED} (absent)")
@pytest.mark.parametrize("key", ["0004", "0284"])
def test_a_face_in_a_dull_or_tinted_photo_is_found_on_a_balanced_copy(key):
    """A dim, low-contrast photo (0004, a man in a green mask, nearly in profile) and one lit
    teal (0284, a black mask): no stage finds the face in the photo as it is; its grey-world
    copy gives the face, at the photo's own coordinates, and says so in its evidence."""
    from maskface.maskgen.colour_balance import SEARCHED_COPIES, needs_balance
    from maskface.maskgen.decode import decode_image
    from maskface.maskgen.find_faces import _search

    rgb = decode_image((REAL_MASKED / f"{key}.jpg").read_bytes())
    assert needs_balance(rgb)
    assert _search(rgb, 12.0, {}) == []
    (det,) = detect_faces(rgb)
    assert det.evidence[0] == (SEARCHED_COPIES[0][0], 1.0)
    h, w = rgb.shape[:2]
    eyes = anchor_points(det.points)[:2]
    assert ((eyes >= 0) & (eyes < (w, h))).all() and eye_distance(det.points) > 0.1 * w


@pytest.mark.shared
@pytest.mark.skipif(not REAL_SCENES.is_dir(), reason=f"needs {REAL_SCENES} (absent)")
def test_a_round_pictogram_beside_a_face_is_not_a_face():
    """An advertisement (scene 0033): a woman in an N95, and a round red-and-white pictogram
    that the mesh and the plain model (0.89) take for a face. It shows no skin, so only the
    woman is kept."""
    from maskface.maskgen.decode import decode_image

    rgb = decode_image((REAL_SCENES / "0033.jpg").read_bytes())
    (det,) = detect_faces(rgb)
    assert anchor_points(det.points)[0][0] > 120  # the woman's eye; the pictogram is at x < 90


def test_a_face_with_no_skin_colour_is_kept_only_on_the_plain_models_word(astronaut):
    """The astronaut with red and blue swapped: her face is bluish, skin in no balanced copy
    either, so only the plain model's sure presence keeps her, and her evidence says so."""
    from maskface.maskgen.find_faces import NO_SKIN, SURE_PLAIN

    (det,) = detect_faces(np.ascontiguousarray(astronaut[..., ::-1]))
    evidence = dict(det.evidence)
    assert evidence["skin"] < NO_SKIN and evidence["balanced-skin"] < NO_SKIN
    assert evidence["plain"] >= SURE_PLAIN


def test_a_fit_much_smaller_than_its_detector_box_is_no_face(astronaut):
    """A detector's box holds the face it saw: a fit filling much less of a box the detector
    was not sure of is a piece of something (a pseudo-face made of one eye of a face lit
    blue, a hand), not that face. A region no detector proposed (prior 0) claims no size; a
    sure box is a face the detector saw itself."""
    from maskface.maskgen.facemesh import Roi
    from maskface.maskgen.find_faces import MIN_FILL, _fit_face

    roi = roi_from_landmarks(detect_faces(astronaut)[0].points)
    fit = _fit_face(astronaut, Roi(roi.cx, roi.cy, roi.size, roi.angle, 0.6), False)
    assert fit.points is not None and roi_from_landmarks(fit.points).size > MIN_FILL * roi.size
    wide = Roi(roi.cx, roi.cy, roi.size / (MIN_FILL * 0.8), roi.angle, 0.6)
    fit = _fit_face(astronaut, wide, False)
    assert fit.points is None and fit.reason == "inside-the-box"
    for prior in (0.0, SURE_DETECTOR):
        claimed = Roi(wide.cx, wide.cy, wide.size, wide.angle, prior)
        assert _fit_face(astronaut, claimed, False).points is not None
