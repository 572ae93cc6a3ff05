"""Hair over the cheeks: found from the face's own colours on real faces, kept in front of
every mask, refused on beards, jaw shadows and grey photos, and nothing else changed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, celeba_wild_face, needs_shared

from maskface.maskgen.hair import BEARD_SHARE, find_hair
from maskface.maskgen.samples import SampleRules, face_samples, maskable_face

# celeba-wild faces, looked at: long dark hair falling over the face's left cheek (image
# right); a man with a moustache and beard; curly hair around a face whose jaw is in shadow
# (the shadow runs under the chin from one side to the other); a face without hair over it.
HAIR_OVER_CHEEK = "182646"
BEARD = "182811"
JAW_SHADOW = "184043"
PLAIN = "182638"


def _aligned(key: str):
    rgb, points = celeba_wild_face(key)
    return maskable_face(rgb, points, 256, key, SampleRules(("surgical",)))


@needs_shared()
def test_hair_over_a_cheek_is_found_on_that_side_of_the_lower_face():
    face = _aligned(HAIR_OVER_CHEEK)
    hair = find_hair(face.crop, face.points)
    assert hair is not None and hair.separation > 8
    solid = hair.cover == 1.0
    nose_x, nose_y = face.points[4, :2]
    ys, xs = np.nonzero(solid)
    # On the image's right, beside the mouth and below the nose: where the strands fall.
    assert np.count_nonzero(solid[int(nose_y):]) > 500
    assert (xs > nose_x + 20).all()
    assert not solid[:, : int(nose_x)].any()


@needs_shared()
def test_hair_stays_in_front_of_every_mask_and_nothing_else_changes():
    rgb, points = celeba_wild_face(HAIR_OVER_CHEEK)
    types = ("surgical", "cloth", "n95", "neck-gaiter")
    bare = maskable_face(rgb, points, 256, HAIR_OVER_CHEEK, SampleRules(types))
    rules = SampleRules(types, hair=True)
    face = maskable_face(rgb, points, 256, HAIR_OVER_CHEEK, rules)
    assert [o.kind for o in face.occluders] == ["hair"]
    cover = face.occluders[0].cover
    solid, away = cover >= 0.5, cover == 0
    for before, after in zip(face_samples(bare, SampleRules(types)), face_samples(face, rules),
                             strict=True):
        a, b = before.rendered, after.rendered
        assert np.count_nonzero(a.mask[solid]) > 200  # the mask was drawn over the hair
        assert not b.mask[solid].any()
        full = cover == 1.0
        assert (b.masked[full] == face.crop[full]).all()
        occ = b.meta["occluded_by"]
        assert [o["kind"] for o in occ] == ["hair"] and occ[0]["hides"] == "mask"
        assert occ[0]["pixels"] == np.count_nonzero(a.mask) - np.count_nonzero(b.mask)
        assert (a.masked[away] == b.masked[away]).all() and (a.mask[away] == b.mask[away]).all()
        assert a.meta["placement"] == b.meta["placement"] and before.reason == after.reason


@needs_shared()
def test_a_beard_is_not_hair():
    face = _aligned(BEARD)
    assert find_hair(face.crop, face.points) is None
    # And it is the beard guard that says so: the chin and upper lip are not skin.
    import maskface.maskgen.hair as hair

    lab = cv2.cvtColor(face.crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    _, _, iod = hair.face_frame(face.points)
    depth = hair._depth(hair._fill(face.points[list(hair.FACE_OVAL), :2], 256))
    upper = hair._model(lab[hair._skin_region(face.points, depth, iod, face.points[4, 1])])
    share = hair._beard_share(face.points, hair._distance(lab, upper) > hair.SKIN_FAR, iod)
    assert share > BEARD_SHARE


@needs_shared()
@pytest.mark.parametrize("key", [JAW_SHADOW, PLAIN])
def test_no_hair_on_a_shadowed_jaw_or_a_bare_face(key):
    face = _aligned(key)
    assert find_hair(face.crop, face.points) is None


def test_no_hair_on_the_astronaut_in_colour_or_grey(astronaut):
    from maskface.maskgen.landmarks import detect_landmarks

    for img in (astronaut, np.repeat(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[..., None],
                                     3, axis=2)):
        face = maskable_face(img, detect_landmarks(img).points, 256, "a",
                             SampleRules(("surgical",), hair=True))
        assert face.occluders == ()
        assert find_hair(face.crop, face.points) is None


@needs_shared()
def test_a_grey_copy_of_a_face_with_hair_gets_none():
    face = _aligned(HAIR_OVER_CHEEK)
    grey = np.repeat(cv2.cvtColor(face.crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert find_hair(face.crop, face.points) is not None
    assert find_hair(grey, face.points) is None


def _samples(out) -> dict[str, dict]:
    from maskface.maskgen.shards import decode_sample, iter_samples

    return {s["__key__"]: s for shard in sorted(out.glob("*/shard-*.tar"))
            for s in map(decode_sample, iter_samples(shard))}


@needs_shared()
def test_generate_keeps_hair_in_front_and_leaves_other_faces_alone(tmp_path):
    """generate (hair on by default) records the hair in the samples and the manifest; with
    --no-hair the hair is painted over; a face without hair is the same bytes either way."""
    import json
    import shutil

    from click.testing import CliRunner

    from maskface.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for key in (HAIR_OVER_CHEEK, PLAIN):
        shutil.copy(SHARED_DATA / "celeba-wild" / f"{key}.jpg", src / f"{key}.jpg")
    args = ["--src", str(src), "--types", "surgical,kn95", "--per-face", "all", "--jobs", "1",
            "--no-progress", "--split-ratios", "1,0,0"]
    for name, extra in (("hair", []), ("none", ["--no-hair"])):
        res = CliRunner().invoke(main, ["generate", "--out", str(tmp_path / name), *args, *extra])
        assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "hair" / "manifest.json").read_text())
    assert manifest["config"]["occluders"] == "hands,hair"
    with_hair, without = _samples(tmp_path / "hair"), _samples(tmp_path / "none")
    for t in ("surgical", "kn95"):
        meta = with_hair[f"{HAIR_OVER_CHEEK}_{t}"]["json"]
        assert [o["kind"] for o in meta["occluded_by"]] == ["hair"]
        assert "occluded_by" not in without[f"{HAIR_OVER_CHEEK}_{t}"]["json"]
        a, b = with_hair[f"{PLAIN}_{t}"], without[f"{PLAIN}_{t}"]
        for part in ("masked", "clean", "mask"):
            assert a[part].tobytes() == b[part].tobytes()
        assert a["json"] == b["json"]
