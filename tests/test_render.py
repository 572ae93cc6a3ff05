"""Rendering: every mask type on a real face; the binary mask is exactly the changed pixels."""

from __future__ import annotations

import numpy as np
import pytest

from maskface.maskgen.align import align_face
from maskface.maskgen.landmarks import LEFT_EYE, RIGHT_EYE, detect_landmarks
from maskface.maskgen.render import render_mask
from maskface.maskgen.templates import parse_anchor, registry, select_types


@pytest.fixture(scope="module")
def aligned(astronaut):
    det = detect_landmarks(astronaut)
    crop, _, pts = align_face(astronaut, det.points, 256)
    return crop, pts


@pytest.mark.parametrize("name", list(registry()))
def test_every_type_renders_with_an_exact_binary_mask(aligned, name):
    crop, pts = aligned
    r = render_mask(crop, pts, registry()[name], np.random.default_rng(3))
    assert r.masked.shape == crop.shape and r.mask.dtype == np.uint8
    assert set(np.unique(r.mask)) == {0, 255}
    changed = (r.masked != crop).any(axis=2)
    outside = r.mask == 0
    assert not changed[outside].any(), "a pixel outside the binary mask changed"
    # And the mask is not inflated: nearly all of it visibly differs from the face.
    assert changed[~outside].mean() > 0.9
    # Placement: mouth and nose tip covered, eyes free.
    def covered(i):
        x, y = np.round(pts[i, :2]).astype(int)
        return r.mask[y, x] > 0
    assert covered(13) and covered(14) and covered(1), "mouth or nose left uncovered"
    assert not any(covered(i) for i in (*LEFT_EYE, *RIGHT_EYE)), "an eye is covered"
    assert 0.08 < r.meta["coverage"] < 0.5


def test_same_seed_same_pixels_other_seed_other_pixels(aligned):
    crop, pts = aligned
    t = registry()["cloth"]
    a = render_mask(crop, pts, t, np.random.default_rng(11))
    b = render_mask(crop, pts, t, np.random.default_rng(11))
    c = render_mask(crop, pts, t, np.random.default_rng(12))
    assert np.array_equal(a.masked, b.masked) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.masked, c.masked)


def test_mask_turns_with_the_head(astronaut):
    """A piecewise warp follows the face: rotate the photo, the mask rotates with it."""
    import cv2

    m = cv2.getRotationMatrix2D((256, 256), 25, 1.0)
    turned = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REFLECT_101)
    det = detect_landmarks(turned)
    # Render in photo coordinates (identity alignment) to see the mask's own orientation.
    pts = det.points
    r = render_mask(turned, pts, registry()["surgical"], np.random.default_rng(0))
    ys, xs = np.nonzero(r.mask)
    cov = np.cov(np.stack([xs, ys]))
    angle = np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
    assert angle == pytest.approx(-25, abs=8)


def test_anchor_syntax():
    a = parse_anchor("234*0.6 + 93*0.4 @ 0,0.1")
    assert a.indices == (234, 93) and a.weights == pytest.approx((0.6, 0.4))
    assert a.offset == (0.0, 0.1)
    assert parse_anchor("1 + 2").weights == (0.5, 0.5)
    for bad in ("x", "1*0.5 + 2", "999", "1 @ 3"):
        with pytest.raises(ValueError):
            parse_anchor(bad)


def test_type_selection():
    assert select_types("all") == list(registry())
    assert select_types("surgical, cloth") == ["surgical", "cloth"]
    with pytest.raises(ValueError, match="unknown mask type"):
        select_types("surgical,nope")


def test_black_and_white_photo_gets_a_black_and_white_mask(aligned):
    crop, pts = aligned
    gray = np.repeat(crop.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
    for seed in range(4):
        r = render_mask(gray, pts, registry()["cloth"], np.random.default_rng(seed))
        assert np.array_equal(r.masked[..., 0], r.masked[..., 1])
        assert np.array_equal(r.masked[..., 1], r.masked[..., 2])


@pytest.mark.parametrize("name", ["surgical", "kn95", "cloth"])
def test_wear_styles_slide_the_mask_down(aligned, name):
    crop, pts = aligned
    t = registry()[name]
    proper = render_mask(crop, pts, t, np.random.default_rng(0)).placement
    nose = render_mask(crop, pts, t, np.random.default_rng(0), wear="nose-exposed").placement
    chin = render_mask(crop, pts, t, np.random.default_rng(0), wear="under-chin").placement
    assert proper.mouth_covered and proper.nostrils_covered
    assert nose.mouth_covered and not nose.nostrils_covered
    assert not chin.mouth_covered and not chin.nostrils_covered
    assert proper.problem("proper") is None and nose.problem("nose-exposed") is None
    assert nose.problem("proper") == "nostrils-uncovered"


def test_a_maskthefacestyle_pack_loads_and_renders(tmp_path, aligned):
    """A MaskTheFace template pack (masks.cfg + RGBA PNG, made here) works as it is."""
    import cv2

    from maskface.maskgen.templates import registry as reg

    pack = tmp_path / "pack"
    (pack / "templates").mkdir(parents=True)
    img = np.zeros((300, 500, 4), np.uint8)
    cv2.rectangle(img, (20, 20), (480, 280), (40, 160, 60, 255), -1)  # BGRA: a green mask
    cv2.line(img, (20, 150), (480, 150), (20, 90, 30, 255), 6)
    cv2.imwrite(str(pack / "templates" / "green.png"), img)
    (pack / "masks.cfg").write_text(
        "[green]\ntemplate: templates/green.png\nmask_a: 20,20\nmask_b: 250,20\n"
        "mask_c: 480,20\nmask_d: 20,280\nmask_e: 250,280\nmask_f: 480,280\n")
    templates = reg((str(pack),))
    assert "green" in templates and "surgical" in templates
    crop, pts = aligned
    r = render_mask(crop, pts, templates["green"], np.random.default_rng(0))
    changed = (r.masked != crop).any(axis=2)
    assert not changed[r.mask == 0].any()
    assert r.placement.mouth_covered and r.placement.eyes_free
    inside = r.masked[r.mask > 0].astype(int)
    assert (inside[:, 1] > inside[:, 0]).mean() > 0.8  # its own colour (green), not recoloured
    with pytest.raises(ValueError, match="missing"):
        (pack / "masks.cfg").write_text("[bad]\ntemplate: templates/green.png\n")
        reg.cache_clear()
        reg((str(pack),))
