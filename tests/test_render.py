"""Rendering: every mask type on a real face; the binary mask is exactly the changed pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskface.maskgen.align import align_face
from maskface.maskgen.facepoints import LEFT_EYE, RIGHT_EYE
from maskface.maskgen.landmarks import detect_landmarks
from maskface.maskgen.render import Shadow, cast_shadow, pick_colour, render_mask
from maskface.maskgen.templates import parse_anchor, registry, select_types, template_from_dict
from maskface.maskgen.texture import draw_texture
from maskface.maskgen.warp import face_frame


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


@pytest.mark.parametrize("name", ["n95", "n95-valve", "ffp2-duckbill"])
def test_head_straps_go_out_of_sight_at_the_face_outline(aligned, name):
    """Straps run back around the head: seen from the front they end where they pass the
    face's outline by the ear and the jaw, not in the air beside the head (they once ended
    half an eye distance out, like whiskers)."""
    from maskface.maskgen.facepoints import FACE_OVAL

    crop, pts = aligned
    iod = np.linalg.norm(pts[list(LEFT_EYE), :2].mean(0) - pts[list(RIGHT_EYE), :2].mean(0))
    oval = pts[list(FACE_OVAL), :2].astype(np.float32)
    r = render_mask(crop, pts, registry()[name], np.random.default_rng(0))
    ys, xs = np.nonzero(r.mask)
    upper = ys < pts[13, 1]  # above the mouth: straps and the mask's sides, not its chin
    out = [-cv2.pointPolygonTest(oval, (float(x), float(y)), True)
           for x, y in zip(xs[upper], ys[upper], strict=True)]
    assert 0.05 * iod < max(out) < 0.25 * iod  # straps reach the outline, and stop there


def test_anchor_syntax():
    a = parse_anchor("234*0.6 + 93*0.4 @ 0,0.1")
    assert a.indices == (234, 93) and a.weights == pytest.approx((0.6, 0.4))
    assert a.offset == (0.0, 0.1)
    assert parse_anchor("1 + 2").weights == (0.5, 0.5)
    for bad in ("x", "1*0.5 + 2", "999", "1 @ 3"):
        with pytest.raises(ValueError):
            parse_anchor(bad)


def test_a_misspelt_wear_style_is_refused():
    import json

    from maskface.maskgen.templates import ASSETS_DIR, template_from_dict

    d = json.loads((ASSETS_DIR / "bandana.json").read_text())
    assert template_from_dict(d).wear_shift  # bandana has its own shifts
    d["wear_shift"] = {"nose_exposed": 1.0}
    with pytest.raises(ValueError, match="unknown wear style"):
        template_from_dict(d)


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
    # The mask's body (not the faint shadow it casts on the skin): its own colour, green.
    body = (r.mask > 0) & (np.abs(r.masked.astype(int) - crop).max(axis=2) > 24)
    inside = r.masked[body].astype(int)
    assert (inside[:, 1] > inside[:, 0]).mean() > 0.8  # its own colour (green), not recoloured
    with pytest.raises(ValueError, match="missing"):
        (pack / "masks.cfg").write_text("[bad]\ntemplate: templates/green.png\n")
        reg.cache_clear()
        reg((str(pack),))


def test_sponge_mask_covers_nose_mouth_and_chin_with_ear_holes_cut_out(aligned):
    """The foam ("sponge") mask, common in real photos: up the nose, under the chin, and its
    one-piece ear loops leave holes in which the cheek shows."""
    crop, pts = aligned
    t = registry()["sponge"]
    r = render_mask(crop, pts, t, np.random.default_rng(0))
    for i in (1, 4, 13, 14, 98, 327, 152):  # nose tip, nostrils, lips, chin
        x, y = np.round(pts[i, :2]).astype(int)
        assert r.mask[y, x] > 0, f"landmark {i} uncovered"
    assert r.placement.eyes_free and r.placement.problem("proper") is None
    tex = draw_texture(t.texture)
    h, w = tex.shape[:2]
    for hole in t.texture.params["holes"]:
        cu, cv = np.mean(hole, axis=0)
        assert tex[round(cv * (h - 1)), round(cu * (w - 1)), 1] == 0.0  # see-through
    assert tex[h // 2, w // 2, 1] == 1.0


def test_dark_masks_are_common_as_in_real_photos(aligned):
    """Real masked photos show black and dark masks about half the time: palettes weight them
    so, and the rendered colours follow the weights."""
    luma = np.array([0.299, 0.587, 0.114])
    for name in ("surgical", "cloth", "kn95", "sponge", "neck-gaiter"):
        t = registry()[name]
        dark = np.array([float(np.array(c) @ luma) < 80 for c in t.palette])
        share = np.array(t.palette_weights)[dark].sum() / sum(t.palette_weights)
        assert 0.25 <= share <= 0.85, f"{name}: dark colours drawn {share:.0%} of the time"
    crop, pts = aligned
    colours = [render_mask(crop, pts, registry()["sponge"], np.random.default_rng(s))
               .meta["colour"] for s in range(40)]
    dark = [int(c[1:3], 16) * 0.299 + int(c[3:5], 16) * 0.587 + int(c[5:7], 16) * 0.114 < 80
            for c in colours]
    assert 0.4 <= np.mean(dark) <= 0.95


def test_weighted_palette_draws_in_proportion_and_checks_its_weights():
    rng = np.random.default_rng(0)
    picks = np.bincount([pick_colour((3.0, 0.0, 1.0), 3, rng) for _ in range(4000)], minlength=3)
    assert picks[1] == 0 and picks[0] / picks[2] == pytest.approx(3.0, rel=0.15)
    base = {"name": "x", "grid": {"u": [0, 1], "v": [0, 1], "anchors": [["1", "2"], ["3", "4"]]},
            "texture": {"style": "cloth", "outline": [[0, 0], [1, 0], [1, 1]]},
            "palette": ["#000000", "#ffffff"]}
    assert template_from_dict({**base, "palette_weights": [1, 2]}).palette_weights == (1.0, 2.0)
    for bad in ([1], [1, -1], [0, 0]):
        with pytest.raises(ValueError, match="palette_weights"):
            template_from_dict({**base, "palette_weights": bad})


def test_black_masks_still_show_their_folds(aligned):
    """Sheen: light a surface reflects whatever its dye, so a black surgical mask shows its
    pleats (as black masks do in photos) instead of a flat black shape."""
    import dataclasses
    import json

    import cv2

    crop, pts = aligned
    black = dataclasses.replace(registry()["surgical"], palette=((20, 20, 22),),
                                palette_weights=())

    def spread(t):
        r = render_mask(crop, pts, t, np.random.default_rng(0))
        g = cv2.cvtColor(r.masked, cv2.COLOR_RGB2GRAY).astype(float)
        v = g[(r.mask > 0) & (g < 80)]  # the black body, not skin under the loops or shadow
        return np.percentile(v, 95) - np.percentile(v, 5)

    flat = dataclasses.replace(black, texture=dataclasses.replace(
        black.texture, params_json=json.dumps({**black.texture.params, "sheen": 0})))
    assert spread(black) > 1.4 * spread(flat)


def test_cast_shadow_darkens_below_the_nose_and_marks_what_it_changed(aligned):
    crop, pts = aligned
    img = crop.copy()
    mask = np.zeros(crop.shape[:2], np.uint8)
    x0, y0, x1, y1 = 70, 120, 190, 230
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    alpha[10:-10, 10:-10] = 1.0
    frame = face_frame(pts)
    cast_shadow(img, mask, (x0, y0, x1, y1), alpha, Shadow((1.0, 6.0), 4.0, 0.4, 20.0),
                pts[4, :2], frame)
    changed = (img != crop).any(axis=2)
    assert np.array_equal(changed, mask > 0)  # exactly the pixels it changed
    assert (img.astype(int) <= crop).all()  # a shadow only darkens
    assert changed[y1 - 10:y1 + 8, x0 + 20:x1 - 20].mean() > 0.5  # under the lower edge
    # Nothing above the nose tip (the eyes) darkens.
    ys, xs = np.nonzero(changed)
    ydir = frame[1]
    assert ((xs - pts[4, 0]) * ydir[0] + (ys - pts[4, 1]) * ydir[1]).min() > 0


def test_small_masks_sample_a_smaller_texture_with_the_same_look(aligned, astronaut, monkeypatch):
    """A mask drawn several texels to a pixel samples the texture averaged down (a mipmap
    level): the same mean shading and alpha, a quarter of the bytes to read; a mask drawn at
    about a texel a pixel keeps the whole texture."""
    from maskface.maskgen import render
    from maskface.maskgen.render import MAX_LEVEL, texture_level
    from maskface.maskgen.texture import packed_texture

    def coef(texels: float) -> np.ndarray:  # a triangle map `texels` texture pixels a pixel
        c = np.zeros((4, 9))
        c[:, 0] = c[:, 4] = texels
        return c

    order = np.arange(4)
    assert texture_level(coef(1.2), order) == 0
    assert texture_level(coef(3.4), order) == 1
    assert texture_level(coef(9.0), order) == MAX_LEVEL == 2
    tex = registry()["surgical"].texture
    (full, scale), (half, _) = packed_texture(tex), packed_texture(tex, level=1)
    assert half.shape[0] == full.shape[0] // 2 and half.shape[2] == full.shape[2]
    np.testing.assert_allclose(half.mean((0, 1)) * scale, full.mean((0, 1)) * scale, rtol=0.01)
    # The aligned 256 px crop shows masks at ~3 texels a pixel: level 1. The same face at
    # 512 px keeps level 0, and both show the mask alike at the same scale.
    crop, pts = aligned
    big, _, big_pts = align_face(astronaut, detect_landmarks(astronaut).points, 512)
    levels = []

    def recorded(tex, level=0):
        levels.append(level)
        return packed_texture(tex, level=level)

    monkeypatch.setattr(render, "packed_texture", recorded)
    small_r = render_mask(crop, pts, registry()["surgical"], np.random.default_rng(0))
    big_r = render_mask(big, big_pts, registry()["surgical"], np.random.default_rng(0))
    assert levels == [0, 1, 0]  # the full texture's size first, then the level drawn
    shrunk = cv2.resize(big_r.masked, (256, 256), interpolation=cv2.INTER_AREA)
    both = (small_r.mask > 0) & (cv2.resize(big_r.mask, (256, 256)) > 0)
    diff = np.abs(shrunk.astype(int) - small_r.masked)[both].mean()
    assert diff < 6, diff
