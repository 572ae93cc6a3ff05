"""Render one mask onto one aligned face: warp, colour, pattern, light, loops, blend.

``render_mask`` is pure: the same face, landmarks, template and random generator state give the
same bytes. The binary mask it returns is exactly the set of pixels the mask layer touches, and
outside it the masked image equals the clean one byte for byte.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import cv2
import numpy as np

from .facepoints import (
    LEFT_EAR_TOP,
    LEFT_FACE_SIDE,
    LEFT_JAW_ANGLE,
    NOSE_TIP,
    RIGHT_EAR_TOP,
    RIGHT_FACE_SIDE,
    RIGHT_JAW_ANGLE,
)
from .parts import contact_shadow, render_parts
from .placement import Placement, check_placement, face_region
from .raster import PATTERNS, blend_layer, darken, paint_layer
from .rejection import Rejection
from .templates import WEAR_SHIFT, Template
from .texture import packed_texture
from .warp import (
    bounding_box,
    face_frame,
    mesh_nodes,
    slide_down,
    template_mesh,
    triangle_maps,
)

# Alpha below this changes no 8-bit pixel value: treated as not covered.
ALPHA_MIN = 1.0 / 255.0
# Spline refinement of template grids (rows, columns): columns carry the mask's outline along
# the jaw and cheeks, so they get more points than the few rows.
REFINE = (1, 2)
# Colour levels of light a mask's surface reflects whatever its dye (raster.paint_layer), for
# types that do not set their own ``sheen``: enough that black fabric shows its folds.
DEFAULT_SHEEN = 40.0
# Coarsest texture mipmap level (1/4 of the drawn texture's side).
MAX_LEVEL = 2


class RenderError(Rejection):
    """A mask that cannot be placed on this face."""


@dataclass(frozen=True)
class FaceContext:
    """What rendering needs to know about a face's photo, computed once per face: its
    low-frequency light, its exposure and its grain."""

    shade: np.ndarray  # (S, S) float32: light relative to the lower face's mean, x exposure
    exposure: float
    noise: float
    grayscale: bool  # a black-and-white photo gets a black-and-white mask
    light_dir: np.ndarray  # (3,) unit vector towards the main light (camera looks along +z)
    region: np.ndarray | None = None  # placement.face_region, when landmarks were given


def prepare_face(face: np.ndarray, points: np.ndarray | None = None) -> FaceContext:
    """Measure the light, exposure and sensor grain of an aligned face crop (and, given its
    landmarks, the face region that placement checks use)."""
    size = face.shape[0]
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.GaussianBlur(small, (0, 0), 3.0)
    # A white mask should not outshine the brightest things in a dim photo.
    sub = small[::2, ::2].ravel()
    k = int(0.97 * (sub.size - 1))
    exposure = min(max(float(np.partition(sub, k)[k]) / 235.0, 0.35), 1.03)
    # Light relative to the lower face (where masks sit in the canonical crop), softened.
    mean = max(_mean(low[34:60, 16:48]), 1.0)
    rel = np.clip(low * (1.0 / mean), 0.55, 1.35) ** 0.8 * exposure
    shade = cv2.resize(rel, (size, size), interpolation=cv2.INTER_LINEAR)
    c0, c1 = size // 4, 3 * size // 4  # the face's middle is enough to judge the grain
    g = gray[c0:c1:2, c0:c1:2].astype(np.float32)
    res = np.abs(g - cv2.blur(g, (3, 3))).ravel()
    noise = float(np.partition(res, res.size // 2)[res.size // 2] * 1.2)
    sample = face[::8, ::8].astype(np.int16)
    grayscale = bool(np.abs(sample - sample[..., :1]).max() <= 2)
    # Where the light comes from: which side of the (canonically placed) face is brighter.
    cheeks = low[28:56, 14:50]
    left, right = _mean(cheeks[:, :18]), _mean(cheeks[:, 18:])
    top, bottom = _mean(low[20:32, 18:46]), _mean(low[44:56, 18:46])
    lx = min(max((right - left) / max(right + left, 1.0) * 4.0, -0.8), 0.8)
    ly = min(max((bottom - top) / max(bottom + top, 1.0) * 2.0, -0.5), 0.5)
    light = np.array([lx, ly - 0.25, -1.0])  # a little from above by default
    region = face_region(points, face.shape[:2]) if points is not None else None
    return FaceContext(shade, exposure, noise, grayscale, light / np.linalg.norm(light), region)


def _mean(a: np.ndarray) -> float:
    """``float(a.mean())`` of a float32 array, the same value (numpy's float32 sum, divided
    in float64, rounded to float32) without np.mean's ~5 us of Python around it."""
    return float(np.float32(float(a.sum()) / a.size))


@dataclass(frozen=True)
class Rendered:
    masked: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) uint8, 0 or 255
    meta: dict
    placement: Placement


def render_mask(face: np.ndarray, points: np.ndarray, template: Template,
                rng: np.random.Generator, *, source_scale: float = 1.0,
                context: FaceContext | None = None, wear: str = "proper") -> Rendered:
    """Draw ``template`` on an aligned ``face`` (RGB uint8) with landmarks ``points`` (478, 3)
    in the crop's pixels. ``source_scale`` is how much alignment enlarged the source (> 1 for
    low-resolution sources), used to soften the mask to the photo's sharpness; ``context`` is
    :func:`prepare_face` of the face, when the caller renders several masks on it; ``wear`` is
    one of ``WEAR_SHIFT`` (proper, nose-exposed, under-chin)."""
    size = face.shape[0]
    ctx = context if context is not None else prepare_face(face, points)
    tex, tex_scale = packed_texture(template.texture)
    th, tw = tex.shape[:2]
    mesh = template_mesh(template, REFINE)
    frame = face_frame(points)
    if wear not in WEAR_SHIFT:
        raise ValueError(f"unknown wear style {wear!r}; known: {', '.join(WEAR_SHIFT)}")
    # WEAR_SHIFT is in rows of the built-in four-row layout; other grids scale it.
    rows = len(template.v)
    shift = dict(template.wear_shift).get(wear, WEAR_SHIFT[wear] * (rows - 1) / 3)
    nodes = slide_down(mesh_nodes(mesh, points, frame), mesh.shape, shift * REFINE[0])
    box = x0, y0, x1, y1 = bounding_box(nodes[:, :2], size)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise RenderError("mask-off-crop", "the mask grid covers no pixel of the crop")

    # Appearance: colours and pattern, painted over the warped texture with the face's light.
    look = _appearance(template, ctx.grayscale, rng)
    tris, coef, order = triangle_maps(mesh, nodes, (th, tw), ctx.light_dir)
    level = texture_level(coef, order)
    if level:
        tex, tex_scale = packed_texture(template.texture, level=level)
        # The same triangles; their maps to texture pixels shrink with the texture.
        coef[:, 0:3] *= (tex.shape[1] - 1) / (tw - 1)
        coef[:, 3:6] *= (tex.shape[0] - 1) / (th - 1)
    layer = paint_layer(x0, y0, x1, y1, tris, coef, order, tex, tex_scale, ctx.shade,
                        look.colours, look.pattern_id, look.params, look.fields,
                        template.texture.aspect, look.feature,
                        float(template.texture.params.get("sheen", DEFAULT_SHEEN)))
    alpha = layer[..., 3]
    if not alpha.any():
        raise RenderError("mask-off-crop", "the mask covers no pixel of the crop")

    # Match the photo: soften when the source was upscaled, add its grain.
    blur = max(0.45, 0.5 * source_scale)
    masked = face.copy()
    mask = np.zeros(face.shape[:2], np.uint8)
    cast_shadow(masked, mask, box, alpha, shadow_params(frame, ctx.light_dir, rng),
                points[NOSE_TIP, :2], frame)
    if template.loops != "none":
        head = template.loops == "head"
        curves = ear_loops(nodes.reshape(*mesh.shape, 3), points, frame, head)
        _draw_loops(masked, mask, face, curves, head, look.base, ctx.exposure, frame[2])
    _composite(masked, mask, box, layer, blur,
               rng.standard_normal(3, dtype=np.float32) if ctx.noise > 0.3 else None,
               ctx.noise, ctx.grayscale)
    if template.parts:
        _draw_parts(masked, mask, points, template, look, ctx, frame[2], blur, rng,
                    (nodes, mesh.tris))
    # Clear windows (alpha ~0.2) still cover.
    placement = check_placement(alpha > 0.05, points, ctx.region, (x0, y0))
    meta = {"colour": "#{:02x}{:02x}{:02x}".format(*(int(c) for c in look.base)),
            "pattern": look.pattern,
            "coverage": round(float(np.count_nonzero(mask)) / mask.size, 5),
            "wear": wear, "placement": placement.as_dict()}
    return Rendered(masked, mask, meta, placement)


@dataclass(frozen=True)
class _Look:
    """A mask's colours and pattern (see :func:`_appearance`)."""

    base: np.ndarray  # (3,) float32: the dye
    pattern: str
    pattern_id: int
    params: np.ndarray
    colours: np.ndarray
    fields: np.ndarray
    feature: np.ndarray  # (3,) float32: the colour of valves, filters and other parts


def _appearance(template: Template, grayscale: bool, rng: np.random.Generator) -> _Look:
    """Base colour (jittered), pattern and feature colour of one mask, drawn from ``rng``; a
    black-and-white photo gets them in grey."""
    base = np.array(template.palette[pick_colour(template.palette_weights,
                                                 len(template.palette), rng)], np.float32)
    # Tint jitter in proportion to the colour: a fixed +-4 levels would turn black masks purple
    # or green, and real black masks are neutral.
    base = np.clip(base * rng.uniform(0.92, 1.06) + rng.normal(0, 1, 3) * (1 + 0.015 * base),
                   0, 255)
    base = base.astype(np.float32)
    pattern = template.patterns[rng.integers(len(template.patterns))]
    pid, params, colours, fields = pattern_params(pattern, base, rng)
    feature = np.array(template.feature_palette[rng.integers(len(template.feature_palette))]
                       if template.feature_palette else base, np.float32)
    if grayscale:
        colours = np.repeat(colours @ _LUMA[:, None], 3, axis=1).astype(np.float32)
        base = colours[0]
        feature[:] = float(feature @ _LUMA)
    return _Look(base, pattern, pid, params, colours, fields, feature)


def _draw_loops(masked: np.ndarray, mask: np.ndarray, face: np.ndarray,
                curves: list[np.ndarray], head: bool, base: np.ndarray, exposure: float,
                iod: float) -> None:
    """Ear loops (or head straps) as thin anti-aliased lines straight into ``masked``; the
    pixels they changed join the binary ``mask``."""
    if not curves:
        return
    colour = (np.clip(base * (0.8 if head else 0.95) + 12, 0, 255) * exposure).tolist()
    thick = max(1, round((0.035 if head else 0.022) * iod))
    cv2.polylines(masked, curves, False, colour, thick, cv2.LINE_AA, shift=4)
    x0, y0, x1, y1 = bounding_box(np.concatenate(curves) / 16.0, masked.shape[0], thick + 2)
    d = cv2.absdiff(masked[y0:y1, x0:x1], face[y0:y1, x0:x1])
    mask[y0:y1, x0:x1][(d[..., 0] | d[..., 1] | d[..., 2]) > 0] = 255


def _draw_parts(masked: np.ndarray, mask: np.ndarray, points: np.ndarray, template: Template,
                look: _Look, ctx: FaceContext, iod: float, blur: float,
                rng: np.random.Generator, surface: tuple[np.ndarray, np.ndarray]) -> None:
    """The template's rigid parts (:mod:`.parts`) in front of the drawn mask, in place: their
    contact shadow on it, then the parts, softened and grained as the mask; their pixels join
    the binary ``mask``. Only templates with parts draw from ``rng`` here."""
    colours = [look.feature if p.colour == "feature" else look.base * 0.85
               for p in template.parts]
    drawn = render_parts(template.parts, points, iod, masked.shape[0], colours, ctx.light_dir,
                         ctx.exposure, surface)
    if drawn is None:
        return
    layer, box = drawn
    contact_shadow(masked, mask, layer, box, ctx.light_dir, iod)
    _composite(masked, mask, box, layer, blur,
               rng.standard_normal(3, dtype=np.float32) if ctx.noise > 0.3 else None,
               ctx.noise, ctx.grayscale)


def texture_level(coef: np.ndarray, order: np.ndarray) -> int:
    """The texture's mipmap level for a mask placed with triangle maps ``coef`` (see
    ``warp.triangle_maps``): the largest whose texels are still no bigger than the mask's
    pixels in its less-shrunk direction (median over its triangles), at most MAX_LEVEL.
    Sampling a texture several texels a pixel apart aliases its grain into noise and, with
    textures larger than the core's cache, is most of a mask's painting time."""
    if len(order) == 0:
        return 0
    c = coef[order]
    sizes = np.minimum(np.hypot(c[:, 0], c[:, 3]), np.hypot(c[:, 1], c[:, 4]))
    # The median, as np.median takes it (the mean of the middle two of an even count) at a
    # fifth of its cost.
    k = len(sizes) // 2
    if len(sizes) % 2:
        texels = float(np.partition(sizes, k)[k])
    else:
        mid = np.partition(sizes, (k - 1, k))
        texels = float(mid[k - 1] + mid[k]) / 2  # summed in the array's dtype, as np.mean
    return int(min(MAX_LEVEL, math.floor(math.log2(texels)))) if texels >= 2.0 else 0


def pick_colour(weights: tuple[float, ...], n: int, rng: np.random.Generator) -> int:
    """Index of a palette colour: uniform, or in proportion to ``weights`` when given."""
    if not weights:
        return int(rng.integers(n))
    cum = list(accumulate(weights))
    return min(bisect_right(cum, rng.random() * cum[-1]), n - 1)


SHADOW_MIN = 0.012  # darkening below this (about 3 levels of 255) is left out


@dataclass(frozen=True)
class Shadow:
    """A mask's shadow on the face: moved ``shift`` pixels (x, y) away from the light,
    softened by ``sigma`` pixels, darkening by up to ``strength``; ``fade`` pixels below the
    nose tip it reaches full strength."""

    shift: tuple[float, float]
    sigma: float
    strength: float
    fade: float


def shadow_params(frame: tuple[np.ndarray, np.ndarray, float], light: np.ndarray,
                  rng: np.random.Generator) -> Shadow:
    """Draw a shadow for a face: mostly downwards (light from above, as indoors and outdoors),
    leaning away from the side the light comes from; its length and softness drawn at random,
    as masks stand off faces and lights are small or broad by different amounts."""
    xdir, ydir, iod = frame
    away = ydir - 0.5 * float(light[0]) / max(abs(float(light[2])), 0.3) * xdir
    shift = iod * rng.uniform(0.03, 0.08) * away
    return Shadow((float(shift[0]), float(shift[1])), iod * rng.uniform(0.03, 0.07),
                  rng.uniform(0.15, 0.45), 0.3 * iod)


def cast_shadow(img: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
                alpha: np.ndarray, shadow: Shadow, nose_tip: np.ndarray,
                frame: tuple[np.ndarray, np.ndarray, float]) -> None:
    """Darken ``img`` in place where the mask (``alpha`` over ``box``) shades the face: a soft
    contact shadow along its edges and a cast shadow under its lower edge (the neck under a
    real mask is darker than without it). Nothing above the nose tip darkens, so the eyes stay
    as they were. The pixels it changes join ``mask``: outside it, ``img`` keeps its bytes."""
    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    sx, sy = round(shadow.shift[0]), round(shadow.shift[1])
    pad = int(np.ceil(2.5 * shadow.sigma))  # the tail past 2.5 sigma is under SHADOW_MIN
    rx0, ry0 = max(min(x0, x0 + sx) - pad, 0), max(min(y0, y0 + sy) - pad, 0)
    rx1, ry1 = min(max(x1, x1 + sx) + pad, w), min(max(y1, y1 + sy) + pad, h)
    nx, ny = float(nose_tip[0]), float(nose_tip[1])
    down_x, down_y = float(frame[1][0]), float(frame[1][1])
    if down_y > 0.2:  # an upright enough face: skip the rows above the nose tip outright
        ry0 = max(ry0, int(ny - max((rx0 - nx) * down_x, (rx1 - nx) * down_x) / down_y))
    # The alpha, moved by the shift, clipped to the region (a shift can push it off the crop).
    dx0, dy0 = max(x0 + sx, rx0), max(y0 + sy, ry0)
    dx1, dy1 = min(x1 + sx, rx1), min(y1 + sy, ry1)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    canvas = np.zeros((ry1 - ry0, rx1 - rx0), np.float32)
    canvas[dy0 - ry0:dy1 - ry0, dx0 - rx0:dx1 - rx0] = alpha[dy0 - y0 - sy:dy1 - y0 - sy,
                                                             dx0 - x0 - sx:dx1 - x0 - sx]
    # A shadow this soft loses nothing blurred at half resolution (to 2.5 sigma, where it falls
    # under SHADOW_MIN), at a fraction of the cost.
    k = 2 * int(np.ceil(1.25 * shadow.sigma)) + 1
    half = cv2.GaussianBlur(canvas[::2, ::2], (k, k), 0.5 * shadow.sigma)
    soft = cv2.resize(half, canvas.shape[::-1], interpolation=cv2.INTER_LINEAR)
    # Where the mask is opaque it replaces the face outright: no need to darken what it hides.
    top = max(y0, ry0)
    np.copyto(soft[top - ry0:y1 - ry0, x0 - rx0:x1 - rx0], 0.0, where=alpha[top - y0:] >= 1.0)
    fade = np.array([nx, ny, down_x, down_y, 1.0 / shadow.fade, shadow.strength], np.float64)
    # Its faint tail (under SHADOW_MIN, a level or two) would only widen the binary mask.
    darken(img, mask, soft, ry0, rx0, fade, SHADOW_MIN)


def _composite(img: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
               layer: np.ndarray, blur: float,
               noise_pick: np.ndarray | None = None, noise: float = 0.0,
               mono: bool = False) -> None:
    """Blend a layer into ``img`` in place over ``box``, softened by ``blur`` (sigma, pixels),
    with grain; mark touched pixels in ``mask``.

    ``layer`` is (h, w, 4) float32: colour, then alpha. Alpha below ``ALPHA_MIN`` changes
    nothing, so every pixel outside ``mask`` keeps its exact value.
    """
    x0, y0 = box[:2]
    layer = cv2.GaussianBlur(layer, (0, 0), blur)
    if noise_pick is None:
        grain, noise = _NO_GRAIN, 0.0
    else:
        grain = _grain(layer.shape[:2], noise_pick)
    blend_layer(img, mask, y0, x0, layer, grain, float(noise), mono, ALPHA_MIN)


_GRAIN = np.random.default_rng(7).standard_normal((512, 512, 3)).astype(np.float32)
_NO_GRAIN = np.zeros((1, 1, 3), np.float32)


def _grain(shape: tuple[int, int], pick: np.ndarray) -> np.ndarray:
    """Gaussian grain: a window of a fixed noise tile at an offset drawn by the caller's rng
    (as random as fresh noise for this purpose, and ~50x cheaper)."""
    h, w = shape
    grain = _GRAIN
    if h > grain.shape[0] or w > grain.shape[1]:  # boxes of --size 1024 and up
        grain = np.tile(grain, (h // 512 + 1, w // 512 + 1, 1))
    oy = int(abs(pick[0]) * 1e4) % (grain.shape[0] - h + 1)
    ox = int(abs(pick[1]) * 1e4) % (grain.shape[1] - w + 1)
    return grain[oy:oy + h, ox:ox + w]


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def pattern_params(pattern: str, base: np.ndarray, rng: np.random.Generator
                   ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Draw a fabric pattern's parameters: (pattern id, parameters, colours (K, 3) with the
    base colour first, random fields for camouflage)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    pid = PATTERNS.index(pattern)
    params = np.zeros(6, np.float32)
    fields = np.zeros((0, 2, 2), np.float32)
    colours = [base]
    if pattern != "plain":
        colours.append(_contrast_colour(base, rng))
    if pattern == "stripes":
        ang = rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4])
        width = rng.uniform(0.25, 0.6)  # share of each period in the second colour
        params[:] = (rng.uniform(7, 16), np.cos(ang), np.sin(ang), rng.uniform(0, 1), 0.0, width)
    elif pattern == "checks":
        params[0] = rng.uniform(2.5, 5.5)  # squares per unit (two squares per period)
    elif pattern == "dots":
        params[:2] = (rng.uniform(7, 14), rng.uniform(0.04, 0.09))
    elif pattern == "floral":
        params[0] = rng.uniform(4, 7)
    elif pattern == "camo":
        colours += [np.clip(base * 0.6, 0, 255), np.clip(base * 1.2 + 15, 0, 255)]
        fields = np.stack([cv2.resize(rng.normal(0, 1, (6, 9)).astype(np.float32), (64, 40),
                                      interpolation=cv2.INTER_CUBIC) for _ in range(3)])
    return pid, params, np.array(colours, np.float32), fields


def _contrast_colour(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lum = float(base @ _LUMA)
    if lum > 140:
        return np.clip(rng.uniform(20, 120, 3), 0, 255).astype(np.float32)
    return np.clip(rng.uniform(150, 245, 3), 0, 255).astype(np.float32)


def ear_loops(nodes: np.ndarray, points: np.ndarray,
              frame: tuple[np.ndarray, np.ndarray, float], head: bool = False
              ) -> list[np.ndarray]:
    """Elastic ear loops (or, with ``head``, straps running back around the head above and
    below the ear) from the mask's side edges, as polylines in 1/16 pixel fixed point (for
    ``cv2.polylines(..., shift=4)``). The far side of a turned head gets none: the face hides
    it there."""
    xdir, ydir, iod = frame
    rows = nodes.shape[0]
    # All curves at once, element for element the same arithmetic as one at a time: each
    # 2-vector operation costs ~2 us of numpy overhead, and a mask has up to 4 curves.
    starts, ends, outs = [], [], []
    for side, contour, ear_lm, jaw in ((0, LEFT_FACE_SIDE, LEFT_EAR_TOP, LEFT_JAW_ANGLE),
                                        (-1, RIGHT_FACE_SIDE, RIGHT_EAR_TOP, RIGHT_JAW_ANGLE)):
        col = nodes[:, side, :2]
        outward = -xdir if side == 0 else xdir
        width = abs(float((points[contour, :2] - points[NOSE_TIP, :2]) @ xdir))
        if width < 0.45 * iod:
            continue
        if head:
            starts += [col[max(0, rows // 4)], col[min(rows - 1, (3 * rows) // 4)]]
            # The straps run back around the head, above the ear and below it, and go out of
            # sight where they pass the face's outline there; an end further out drew them
            # as whiskers ending in the air beside the head.
            ends += [points[ear_lm, :2] + outward * 0.08 * iod - ydir * 0.12 * iod,
                     points[jaw, :2] + outward * 0.06 * iod + ydir * 0.1 * iod]
            # Taut over the cheek, a strap bows out less than a loose ear loop.
            outs += [0.4 * outward, 0.4 * outward]
        else:
            starts += [col[0], col[-1]]
            ends += [points[ear_lm, :2] + outward * 0.12 * iod,
                     points[contour, :2] + outward * 0.14 * iod + ydir * 0.25 * iod]
            outs += [outward, outward]
    if not starts:
        return []
    start, end = np.array(starts)[:, None], np.array(ends)[:, None]
    ctrl = (start + end) / 2 + np.array(outs)[:, None] * 0.08 * iod
    curves = _BEZIER[0] * start + _BEZIER[1] * ctrl + _BEZIER[2] * end
    return list(np.round(curves * 16).astype(np.int32))


def _bezier_weights(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of a quadratic Bezier curve's start, control and end points at n steps."""
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2, 2 * (1 - t) * t, t**2


_BEZIER = _bezier_weights(16)
