"""Real MediaPipe FaceMesh on real faces that scikit-image ships."""

from __future__ import annotations

import numpy as np
import pytest

from maskface.maskgen.landmarks import NoFace, anchor_points, detect_landmarks
from maskface.maskgen.pose import head_pose

pytest.importorskip("mediapipe")


def test_astronaut_landmarks_land_on_her_face(astronaut):
    det = detect_landmarks(astronaut)
    assert det.points.shape == (478, 3) and det.faces_found == 1
    left_eye, right_eye, mouth = anchor_points(det.points)
    # Eileen Collins' eyes and mouth in skimage's astronaut.png, located by hand (+-8 px).
    np.testing.assert_allclose(left_eye, (203, 101), atol=8)
    np.testing.assert_allclose(right_eye, (247, 104), atol=8)
    np.testing.assert_allclose(mouth, (223, 140), atol=8)
    pose = head_pose(det.points)
    assert abs(pose["yaw"]) < 12 and abs(pose["roll"]) < 8


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
