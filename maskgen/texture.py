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
    """``(H, W, 3)`` float32: a shading multiplier (~1), the alpha and the weight of the
    template's features (valves, cartridges: drawn in their own colour). Image templates add
    three channels, the picture's own colours as an RGB albedo in [0, 1]."""
    if tex.style == "image":
        return _image_texture(tex.params["image"], height)
    w = round(height * tex.aspect)
    ss = _SUPERSAMPLE
    curve = closed_spline(np.array(tex.outline)) * [w * ss, height * ss]
    big = np.zeros((height * ss, w * ss), np.uint8)
    cv2.fillPoly(big, [np.round(curve * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    for hole in tex.params.get("holes", []):
        # Cut-outs (the ear holes of a foam mask's one-piece loops): their rims get hems too.
        cut = closed_spline(np.array(hole, np.float64)) * [w * ss, height * ss]
        cv2.fillPoly(big, [np.round(cut * 16).astype(np.int32)], 0, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(big, (w, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    # Distance from the edge in texture pixels, for hems and bindings.
    edge = cv2.distanceTransform((big > 127).astype(np.uint8), cv2.DIST_L2, 5)
    edge = cv2.resize(edge, (w, height), interpolation=cv2.INTER_AREA) / ss

    vv, uu = np.mgrid[0:height, 0:w].astype(np.float32)
    g = _Grid(uu / (w - 1), vv / (height - 1), uu, vv, edge / height, tex.aspect)
    rng = np.random.default_rng(12345)  # fixed: the same texture in every process and run
    grain = cv2.GaussianBlur(rng.normal(0, 1, (height, w)).astype(np.float32), (0, 0), 0.8)
    style = _STYLES.get(tex.style)
    if style is None:
        raise ValueError(f"unknown texture style {tex.style!r}; known: {', '.join(_STYLES)}")
    params = tex.params
    detail = style(g, params) + 0.015 * grain
    feature = np.zeros_like(detail)
    for f in params.get("features", []):
        detail, feature = _feature(g, f, detail, feature)
    # Valves and cartridges stand proud of the outline: they are opaque where they are.
    alpha = np.maximum(alpha, feature)
    for win in params.get("windows", []):
        detail, alpha, feature = _window(g, win, detail, alpha, feature)
    return np.dstack([detail, alpha, feature]).astype(np.float32)


def _window(g: _Grid, win: dict, detail: np.ndarray, alpha: np.ndarray, feature: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clear plastic panel in the fabric: see-through, but read as plastic, not as a hole.
    Its edge is thicker and shows more; light glints in two diagonal streaks; it takes the
    template's feature colour (a colourless haze), not the fabric's dye; and a stitched
    binding of fabric runs around it."""
    u0, v0, u1, v1 = win["rect"]
    inside = _soft_box(g, u0, v0, u1, v1, 0.01)
    edge = inside * (1 - _soft_box(g, u0 + 0.02, v0 + 0.03, u1 - 0.02, v1 - 0.03, 0.01))
    s = (g.u - u0) / (u1 - u0) + 0.5 * (g.v - v0) / (v1 - v0)
    glint = np.exp(-(((s - 0.35) / 0.05) ** 2)) + 0.6 * np.exp(-(((s - 0.52) / 0.02) ** 2))
    panel = np.clip(win.get("alpha", 0.2) + 0.25 * edge + 0.3 * glint, 0, 1)
    alpha = alpha * (1 - inside * (1 - panel))
    detail = detail * (1 + inside * (0.5 * glint - 0.1 * edge))
    feature = np.maximum(feature, inside)
    band = (1 - inside) * _soft_box(g, u0 - 0.035, v0 - 0.05, u1 + 0.035, v1 + 0.05, 0.005)
    stitches = band * (np.abs(np.sin(g.uu * 0.8) * np.sin(g.vv * 0.8)) > 0.35)
    detail = detail * (1 - 0.08 * band - 0.1 * stitches * (inside < 0.01))
    return detail, alpha, feature


# Fixed-point scale of each channel in :func:`packed_texture`: detail (a shading multiplier,
# about 0.5-1.5) over [0, 2), the others (alpha, feature weight, albedo) over [0, 1].
_PACK_RANGE = (2.0, 1.0, 1.0, 1.0, 1.0, 1.0)


@lru_cache(maxsize=64)
def packed_texture(tex: Texture, height: int = TEXTURE_HEIGHT, level: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`draw_texture` as uint16 fixed point, and the factor (per channel) that turns it
    back: the renderer samples it. Half the bytes of float32 at a precision (3e-5) far below one
    colour level, so more of all types' textures stay in the CPU's cache while a face gets every
    type (rendering every type per face in turn: 2.08 -> 1.92 ms a mask).

    ``level`` > 0 gives the texture averaged down by 2 ** level (a mipmap level): what a mask
    drawn that many times smaller than the texture shows of it."""
    tex_f = draw_texture(tex, height)
    for _ in range(level):
        tex_f = _halved(tex_f)
    scale = np.array(_PACK_RANGE[:tex_f.shape[2]]) / 65535.0
    packed = np.round(np.clip(tex_f / scale, 0, 65535)).astype(np.uint16)
    packed.flags.writeable = False
    return packed, scale


def _halved(img: np.ndarray) -> np.ndarray:
    """``img`` (H, W, C) at half the size, each pixel the mean of a 2 x 2 block, an odd last
    row or column repeated (OpenCV's area resize gives the same for even sides, but weighs an
    odd one's last column in fractions)."""
    h, w = img.shape[:2]
    img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2, -1).mean(axis=(1, 3),
                                                                            dtype=np.float32)


def _image_texture(path: str, height: int) -> np.ndarray:
    """A template picture (RGBA) as a texture: its colours are the albedo, its alpha the
    alpha."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"template image {path} must be a PNG with an alpha channel")
    h, w = img.shape[:2]
    img = cv2.resize(img, (round(height * w / h), height), interpolation=cv2.INTER_AREA)
    rgba = img[..., [2, 1, 0, 3]].astype(np.float32) / 255.0
    ones = np.ones(rgba.shape[:2], np.float32)
    return np.dstack([ones, rgba[..., 3], 0 * ones, rgba[..., 0], rgba[..., 1], rgba[..., 2]])


class _Grid:
    """Texture-space coordinates shared by the style functions: u, v in [0, 1]; x = u * aspect
    (isotropic units); edge = distance to the outline in texture heights."""

    def __init__(self, u, v, uu, vv, edge, aspect):
        self.u, self.v, self.uu, self.vv, self.edge = u, v, uu, vv, edge
        self.x = u * aspect


def _pleated(g: _Grid, p: dict) -> np.ndarray:
    """Three-ply pleated mask: folds that overhang the panel below, bound edges with a seam,
    a nose wire and the faint bond-point grid of non-woven fabric."""
    detail = np.ones_like(g.u)
    pleats = p.get("pleats", [0.35, 0.55, 0.75])
    for vp in pleats:
        d = (g.v - vp) / 0.045
        # A fold: lit just above the crease, in shadow just below it.
        detail += 0.09 * np.exp(-((d + 0.6) ** 2)) - 0.2 * np.exp(-((d - 0.35) ** 2) * 3)
    # Each panel between folds hangs at an angle: brighter at its top, darker towards the fold.
    top = np.zeros_like(g.v)
    for vp in pleats:
        top = np.where(g.v > vp, vp, top)
    detail -= 0.1 * np.clip((g.v - top) / 0.2, 0, 1) * (g.v > pleats[0])
    wire = p.get("nose_wire", [0.04, 0.1])
    detail += 0.04 * ((g.v > wire[0]) & (g.v < wire[1]) & (np.abs(g.u - 0.5) < 0.12))
    seam = np.exp(-(((g.edge - 0.045) / 0.004) ** 2))  # the binding's stitch line
    bonds = (np.sin(g.uu * 1.9) * np.sin(g.vv * 1.9)) > 0.7
    return detail * (1 - 0.07 * (g.edge < 0.035)) - 0.1 * seam - 0.025 * bonds


def _cloth(g: _Grid, p: dict) -> np.ndarray:
    detail = np.ones_like(g.u)
    if p.get("seam", True):
        detail -= 0.22 * np.exp(-(((g.u - 0.5) * g.uu.shape[1]) / 1.4) ** 2)  # centre seam
    detail *= 1 - 0.08 * (g.edge < 0.03)  # hem
    detail *= 1 - 0.10 * (2 * np.abs(g.u - 0.5)) ** 2  # the sides turn away from the light
    return detail + 0.015 * np.sin(g.uu * 2.1) * np.sin(g.vv * 2.1)  # weave


def _cup(g: _Grid, p: dict) -> np.ndarray:
    """A moulded dome (N95): lit in the middle, falling off towards a firm rim."""
    r2 = ((g.u - 0.5) / 0.5) ** 2 + ((g.v - p.get("apex", 0.45)) / 0.55) ** 2
    detail = 1.06 - 0.22 * np.clip(r2, 0, 1.2) ** 1.5
    rim = (g.edge < 0.03)
    detail = detail * (1 - 0.05 * rim) + 0.03 * (np.abs(g.edge - 0.03) < 0.006)
    return detail


def _folded(g: _Grid, p: dict) -> np.ndarray:
    """Flat-fold respirators: a crease (vertical for KN95, horizontal for a duckbill), panels
    angled to the light, and a welded border of small embossed dots."""
    if p.get("fold", "vertical") == "vertical":
        d = (g.u - 0.5) / 0.012
        detail = np.where(g.u < 0.5, 1.03, 0.93) - 0.18 * np.exp(-d**2)
    else:
        d = (g.v - p.get("fold_at", 0.5)) / 0.015
        detail = np.where(g.v < p.get("fold_at", 0.5), 1.04, 0.92) - 0.15 * np.exp(-d**2)
    band = (g.edge > 0.012) & (g.edge < 0.045)
    dots = (np.sin(g.uu * 1.3) * np.sin(g.vv * 1.3)) > 0.55
    return detail * (1 - 0.05 * band) - 0.05 * (band & dots)


def _rubber(g: _Grid, p: dict) -> np.ndarray:
    """Moulded rubber or silicone: a strong highlight across the nose bridge and a dark rim."""
    detail = 0.9 + 0.25 * np.exp(-(((g.u - 0.45) / 0.18) ** 2 + ((g.v - 0.22) / 0.12) ** 2))
    detail -= 0.12 * ((g.v - 0.4) / 0.6).clip(0, 1) ** 2
    return detail * (1 - 0.12 * (g.edge < 0.025))


def _knit(g: _Grid, p: dict) -> np.ndarray:
    """A stretchy knit tube (neck gaiter): fine vertical ribs and soft horizontal wrinkles."""
    ribs = 0.04 * np.sin(g.uu * 1.6)
    wrinkles = 0.05 * np.sin(g.v * 2 * np.pi * 4.5 + 2.0 * np.sin(g.u * 5.0))
    return 1.0 + ribs + wrinkles - 0.08 * (2 * np.abs(g.u - 0.5)) ** 3


def _bandana(g: _Grid, p: dict) -> np.ndarray:
    """A folded square of cotton: a hem and loose diagonal drape folds."""
    folds = 0.06 * np.sin((g.u * 3.0 + g.v * 2.0) * np.pi) * np.clip(g.v * 1.5, 0, 1)
    return (1.0 + folds) * (1 - 0.07 * (g.edge < 0.02))


def _foam(g: _Grid, p: dict) -> np.ndarray:
    """Moulded polyurethane foam ("sponge" masks): matte and smooth, two panels meeting in a
    seam down the middle over the nose, and a thick cut edge rounded away from the light."""
    d = (g.u - 0.5) * g.uu.shape[1] / 1.3  # seam, in texture pixels
    detail = 1.0 - 0.16 * np.exp(-d**2) + 0.05 * np.exp(-((d - 2.0) ** 2) / 2)  # groove, lip
    detail *= 1 - 0.1 * (2 * np.abs(g.u - 0.5)) ** 2  # the sides turn away from the light
    return detail * (1 - 0.1 * np.exp(-g.edge / 0.012))


_STYLES = {"pleated": _pleated, "cloth": _cloth, "cup": _cup, "folded": _folded,
           "rubber": _rubber, "knit": _knit, "bandana": _bandana, "foam": _foam}


def _soft_box(g: _Grid, u0: float, v0: float, u1: float, v1: float, soft: float) -> np.ndarray:
    du = np.minimum(g.u - u0, u1 - g.u) / soft
    dv = np.minimum(g.v - v0, v1 - g.v) / soft
    return np.clip(np.minimum(du, dv), 0, 1)


def _feature(g: _Grid, f: dict, detail: np.ndarray, feature: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """A round part (valve, filter cartridge): its own colour, a domed face and a rim."""
    cu, cv = f["center"]
    r = f["radius"]  # in texture heights
    d = np.hypot(g.x - cu * g.x.max(), g.v - cv) / r
    disc = np.clip((1.0 - d) * 40.0, 0, 1)  # anti-aliased edge
    face = 1.08 - 0.25 * d**2 - 0.18 * ((d > 0.82) & (d < 0.92))
    if f.get("ribs"):
        face -= 0.06 * (np.sin(np.arctan2(g.v - cv, g.x - cu * g.x.max()) * f["ribs"]) > 0.6)
    detail = detail * (1 - disc) + face * disc
    shadow = np.clip(1.0 - (d - 1.0) / 0.25, 0, 1) * (d > 1.0)
    detail = detail * (1 - 0.2 * shadow)  # the part casts a soft shadow on the fabric
    return detail, np.maximum(feature, disc)
