"""Rigid parts: cylinders placed by the head's pose keep their shape as the head turns, stand
in front of the mask and join its binary mask."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from maskface.maskgen.facepoints import LEFT_EYE, MOUTH, RIGHT_EYE
from maskface.maskgen.parts import face_axes, render_parts
from maskface.maskgen.templates import Anchor, Part, registry

IOD = 60.0
CENTRE = np.array([128.0, 128.0, 0.0])


def _face(yaw_deg: float) -> np.ndarray:
    """A face's key points (eyes, mouth, and point 4 between them) turned by ``yaw_deg``
    about the vertical axis through the crop's centre."""
    pts = np.zeros((478, 3))
    pts[list(LEFT_EYE)] = (-IOD / 2, -30, 0)
    pts[list(RIGHT_EYE)] = (IOD / 2, -30, 0)
    pts[list(MOUTH)] = (0, 40, 0)
    pts[4] = (0, 10, 0)
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return pts @ rot.T + CENTRE


def _area(part: Part, yaw: float) -> float:
    drawn = render_parts((part,), _face(yaw), IOD, 256, [np.array([90.0, 90, 90])],
                         np.array([0.0, 0.0, -1.0]), 1.0)
    assert drawn is not None
    return float(drawn[0][..., 3].sum())


def test_face_axes_are_the_face_frame():
    x, y, n = face_axes(_face(0.0))
    assert np.allclose(x, (1, 0, 0)) and np.allclose(y, (0, 1, 0)) and np.allclose(n, (0, 0, 1))
    x, _, n = face_axes(_face(30.0))
    assert math.degrees(math.atan2(n[0], n[2])) == pytest.approx(30.0)


@pytest.mark.parametrize("yaw", [0.0, 25.0, 50.0])
def test_a_cylinder_keeps_its_shape_as_the_head_turns(yaw):
    """A cylinder pointing out of the face, seen as the head turns by ``yaw``: its silhouette is
    the front cap's ellipse plus the side, ``pi r^2 cos(yaw) + 2 r L sin(yaw)`` (a warped disc
    would shrink to a sliver instead)."""
    r, length = 0.3, 0.25
    part = Part(Anchor((4,), (1.0,)), r, length)
    rp, lp = r * IOD, length * IOD
    a = math.radians(yaw)
    want = math.pi * rp * rp * math.cos(a) + 2 * rp * lp * math.sin(a)
    assert _area(part, yaw) == pytest.approx(want, rel=0.02)


def test_a_cylinder_turned_sideways_leans_away_from_the_face_middle():
    """Turned sideways by ``out``, the part's front cap lies off to the side of the face it
    sits on, by its length times sin(out)."""
    part = Part(Anchor((4,), (1.0,)), 0.2, 0.5, out=40.0)
    drawn, (x0, _, x1, _) = render_parts((part,), _face(0.0), IOD, 256,
                                         [np.array([90.0, 90, 90])], np.array([0, 0, -1.0]), 1.0)
    cols = np.flatnonzero(drawn[..., 3].max(0) >= 0.5) + x0
    # Its caps are discs turned by 40 degrees: half as wide as r cos(40) across the image.
    # Anchored on the middle line (x = 128), it turns to the image's right (side +1): the
    # front cap's centre is L sin(40) to the right of the base's.
    half = 0.2 * IOD * math.cos(math.radians(40))
    assert cols.min() == pytest.approx(128 - half, abs=1.0)
    assert cols.max() == pytest.approx(128 + 0.5 * IOD * math.sin(math.radians(40)) + half,
                                       abs=1.0)


def test_gas_respirator_cartridges_are_rigid_parts_in_the_mask(astronaut):
    from maskface.maskgen.align import align_face
    from maskface.maskgen.landmarks import detect_landmarks
    from maskface.maskgen.render import render_mask

    t = registry()["gas-respirator"]
    assert len(t.parts) == 3 and not t.texture.params.get("features")
    crop, _, pts = align_face(astronaut, detect_landmarks(astronaut).points, 256)
    r = render_mask(crop, pts, t, np.random.default_rng(0))
    drawn = render_parts(t.parts, pts, float(np.linalg.norm(
        pts[list(RIGHT_EYE), :2].mean(0) - pts[list(LEFT_EYE), :2].mean(0))), 256,
        [np.array([90.0, 90, 90])] * 3, np.array([0, 0, -1.0]), 1.0)
    layer, (x0, y0, x1, y1) = drawn
    covered = layer[..., 3] > 0.5
    # Every pixel the parts cover is the mask's, and outside the mask the face is untouched.
    assert (r.mask[y0:y1, x0:x1][covered] == 255).all()
    assert (r.masked[r.mask == 0] == crop[r.mask == 0]).all()
    # Dull colours: no part pixel is strongly saturated.
    part_px = r.masked[y0:y1, x0:x1][covered].astype(int)
    assert np.median(part_px.max(1) - part_px.min(1)) < 40
    # The parts are really drawn: without them the same mask differs where they stand.
    bare = render_mask(crop, pts, dataclasses.replace(t, parts=()), np.random.default_rng(0))
    changed = (bare.masked[y0:y1, x0:x1] != r.masked[y0:y1, x0:x1]).any(-1)
    assert changed[covered].mean() > 0.5
