"""Procedural mask textures: a shading-detail channel and an anti-aliased alpha, in (u, v).

Textures are drawn once per template and process (cached) at a fixed resolution. Colour and
patterns are applied later, per sample, from the warped (u, v) coordinates, so one texture
serves every colour.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .templates import Texture

TEXTURE_HEIGHT = 256
_SUPERSAMPLE = 4


def closed_spline(points: np.ndarray, per_segment: int = 16) -> np.ndarray:
    """A closed Catmull-Rom curve through ``points`` (N, 2), sampled ``per_segment`` per span."""
    p = np.asarray(points, np.float64)
    n = len(p)
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(n):
        p0, p1, p2, p3 = p[(i - 1) % n], p[i], p[(i + 1) % n], p[(i + 2) % n]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    return np.concatenate(out)


@lru_cache(maxsize=64)
def draw_texture(tex: Texture, height: int = TEXTURE_HEIGHT) -> np.ndarray:
    """``(H, W, 2)`` float32: channel 0 is a shading multiplier (~1), channel 1 the alpha."""
    w = round(height * tex.aspect)
    ss = _SUPERSAMPLE
    curve = closed_spline(np.array(tex.outline)) * [w * ss, height * ss]
    big = np.zeros((height * ss, w * ss), np.uint8)
    cv2.fillPoly(big, [np.round(curve * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(big, (w, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    # Distance from the edge in texture pixels, for hems and bindings.
    edge = cv2.distanceTransform((big > 127).astype(np.uint8), cv2.DIST_L2, 5)
    edge = cv2.resize(edge, (w, height), interpolation=cv2.INTER_AREA) / ss

    vv, uu = np.mgrid[0:height, 0:w].astype(np.float32)
    u, v = uu / (w - 1), vv / (height - 1)
    rng = np.random.default_rng(12345)  # fixed: the same texture in every process and run
    grain = cv2.GaussianBlur(rng.normal(0, 1, (height, w)).astype(np.float32), (0, 0), 0.8)
    detail = np.ones((height, w), np.float32)
    p = tex.params
    if tex.style == "pleated":
        for vp in p.get("pleats", [0.35, 0.55, 0.75]):
            d = (v - vp) / 0.045
            # A fold: lit just above the crease, in shadow just below it.
            detail += 0.07 * np.exp(-((d + 0.6) ** 2)) - 0.16 * np.exp(-((d - 0.35) ** 2) * 3)
        wire = p.get("nose_wire", [0.04, 0.1])
        in_wire = (v > wire[0]) & (v < wire[1]) & (np.abs(u - 0.5) < 0.12)
        detail += 0.04 * in_wire
        detail *= 1 - 0.07 * (edge < height * 0.035)  # stitched binding along the edge
        detail += 0.015 * grain
    elif tex.style == "cloth":
        seam = np.exp(-(((u - 0.5) * w) / 1.4) ** 2)
        detail *= 1 - 0.22 * seam
        detail *= 1 - 0.08 * (edge < height * 0.03)  # hem
        # Gentle cup shape: fabric darkens a little towards the sides.
        detail *= 1 - 0.10 * (2 * np.abs(u - 0.5)) ** 2
        weave = np.sin(uu * 2.1) * np.sin(vv * 2.1)
        detail += 0.03 * grain + 0.015 * weave
    else:
        raise ValueError(f"unknown texture style {tex.style!r}")
    return np.dstack([detail, alpha]).astype(np.float32)
