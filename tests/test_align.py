"""Alignment puts eyes and mouth where the canonical layout says, whatever the input pose."""

from __future__ import annotations

import numpy as np
import pytest

from maskface.maskgen.align import (
    CANONICAL,
    align_face,
    similarity_from_points,
    transform_points,
)
from maskface.maskgen.facepoints import anchor_points
from maskface.maskgen.landmarks import detect_landmarks


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (10, 2))
    ang, s, t = 0.4, 1.7, np.array([5.0, -3.0])
    r = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    m = similarity_from_points(src, src @ r.T + t)
    np.testing.assert_allclose(m[:, :2], r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


@pytest.mark.parametrize("size", [128, 256])
def test_aligned_anchors_sit_at_the_canonical_layout(astronaut, size):
    det = detect_landmarks(astronaut)
    crop, m, pts = align_face(astronaut, det.points, size)
    assert crop.shape == (size, size, 3)
    np.testing.assert_allclose(anchor_points(pts), CANONICAL * size, atol=0.04 * size)
    np.testing.assert_allclose(pts[:, :2], transform_points(det.points, m)[:, :2], atol=1e-3)
    # The chin (landmark 152) is inside the crop, with room for a mask below it.
    assert pts[152, 1] < 0.95 * size


def test_beyond_the_photo_a_crop_mirrors_or_is_grey(astronaut):
    from maskface.maskgen.align import OUTSIDE_GREY

    pts = detect_landmarks(astronaut).points
    top = int(pts[:, 1].min())  # the photo now starts at the hairline
    cut = np.ascontiguousarray(astronaut[top:])
    local = pts.copy()
    local[:, 1] -= top
    mirrored, m, _ = align_face(cut, local, 128)
    grey, m2, _ = align_face(cut, local, 128, border="grey")
    np.testing.assert_array_equal(m, m2)
    import cv2

    beyond = cv2.warpAffine(np.ones(cut.shape[:2], np.float32), m, (128, 128)) == 0
    assert beyond[:10].mean() > 0.9  # the top rows of the crop lie above the cut
    assert (grey[beyond] == OUTSIDE_GREY).all()
    assert (mirrored[beyond] != OUTSIDE_GREY).any(axis=-1).mean() > 0.9  # the mirrored face
    np.testing.assert_array_equal(grey[~beyond & (np.arange(128)[:, None] > 40)],
                                  mirrored[~beyond & (np.arange(128)[:, None] > 40)])
    with pytest.raises(ValueError, match="border"):
        align_face(cut, local, 128, border="wrap")


def test_shrinking_big_photos_keeps_the_crop_on_its_landmarks(astronaut):
    """Faces scaled down by more than 2x are first shrunk with INTER_AREA; the crop must still
    sit exactly where the returned matrix says (checked against a direct warp)."""
    import cv2

    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    det_pts = detect_landmarks(astronaut).points.copy()
    det_pts[:, :2] = (det_pts[:, :2] + 0.5) * (3000 / 512) - 0.5
    crop, m, _ = align_face(big, det_pts, 128)
    direct = cv2.warpAffine(cv2.GaussianBlur(big, (0, 0), 3.0), m, (128, 128),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    # Same geometry: the best integer/half-pixel shift between them is zero.
    shift, _ = cv2.phaseCorrelate(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32),
                                  cv2.cvtColor(direct, cv2.COLOR_RGB2GRAY).astype(np.float32))
    assert abs(shift[0]) < 0.15 and abs(shift[1]) < 0.15


def _bright_spot_photo() -> np.ndarray:
    """A 120 px photo: a smooth gradient with a bright square 6 px above its bottom edge."""
    y, x = np.mgrid[0:120, 0:120]
    img = np.stack([x, y, 60 + 0 * x], 2).astype(np.uint8)
    img[104:112, 50:58] = 255
    return img


def test_smear_beyond_the_photo_does_not_mirror_it():
    import cv2

    from maskface.maskgen.align import smear_outside

    img = _bright_spot_photo()
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -40.0]])  # the crop runs 40 px past the bottom
    mirror = cv2.warpAffine(img, m, (120, 120), borderMode=cv2.BORDER_REFLECT_101)
    out = smear_outside(img, m, mirror)
    # The mirror repeats the spot below the edge (crop rows 80..: photo rows 120..); the smear
    # does not: past the edge every column continues its last row, softened.
    assert mirror[80 + 8:80 + 14, 50:58].min() == 255
    assert out[80 + 20:, 50:58].max() < 200
    assert np.abs(out[80 + 20:].astype(int) - img[119:120].astype(int)).max() < 40
    # Inside the photo nothing moves.
    assert (out[:79] == mirror[:79]).all()


def test_smear_leaves_a_crop_within_the_photo_alone():
    import cv2

    from maskface.maskgen.align import smear_outside

    img = _bright_spot_photo()
    m = np.array([[0.9, 0.1, -20.0], [-0.1, 0.9, -15.0]])  # photo x 20..90, y 19..96
    crop = cv2.warpAffine(img, m, (64, 64), borderMode=cv2.BORDER_REFLECT_101)
    assert smear_outside(img, m, crop) is crop


def test_a_tight_crop_is_smeared_not_mirrored_in_the_generator(astronaut):
    """The demo's tight astronaut (the photo ends just past her cheek and below her chin):
    generation's crop continues the edges instead of mirroring her face beyond them; inside the
    photo it is the mirror-filled crop, pixel for pixel."""
    import cv2

    from maskface.maskgen.demo import _apply
    from maskface.maskgen.samples import SampleRules, maskable_face

    tight = _apply(astronaut, "tight")
    pts = detect_landmarks(tight).points
    face = maskable_face(tight, pts, 256, "tight", SampleRules(("surgical",)))
    mirror, m, _ = align_face(tight, pts, 256)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    ys, xs = np.mgrid[0:256, 0:256]
    src = np.stack([xs, ys, np.ones_like(xs)], -1) @ inv[:2].T
    h, w = tight.shape[:2]
    x, y = src[..., 0], src[..., 1]
    inside = (x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)
    far = (y > h + 10) | (x > w + 10)
    assert far.sum() > 2000  # the crop reaches well beyond the photo
    assert (face.crop[inside] == mirror[inside]).all()

    # Beyond the edge the mirror holds the face's detail (lips, teeth, shadows) and the smear
    # is soft: its local contrast is a fraction of the mirror's.
    def detail(img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.abs(g - cv2.GaussianBlur(g, (0, 0), 3))[far].mean()

    assert detail(face.crop) < 0.35 * detail(mirror)
