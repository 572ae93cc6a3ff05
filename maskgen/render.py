"""Render one mask onto one aligned face: warp, colour, pattern, light, loops, blend.

``render_mask`` is pure: the same face, landmarks, template and random generator state give the
same bytes. The binary mask it returns is exactly the set of pixels the mask layer touches, and
outside it the masked image equals the clean one byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .templates import Template
from .texture import draw_texture
from .warp import bounding_box, face_frame, mesh_nodes, template_mesh, warp_maps

# Alpha below this changes no 8-bit pixel value: treated as not covered.
ALPHA_MIN = 1.0 / 255.0
# Spline refinement of template grids (rows, columns): columns carry the mask's outline along
# the jaw and cheeks, so they get more points than the few rows.
REFINE = (1, 2)


class RenderError(ValueError):
    """A mask that cannot be placed on this face (``reason`` goes to ``failures.jsonl``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FaceContext:
    """What rendering needs to know about a face's photo, computed once per face: its
    low-frequency light, its exposure and its grain."""

    shade: np.ndarray  # (S, S) float32: light relative to the lower face's mean, x exposure
    exposure: float
    noise: float
    grayscale: bool  # a black-and-white photo gets a black-and-white mask


def prepare_face(face: np.ndarray) -> FaceContext:
    """Measure the light, exposure and sensor grain of an aligned face crop."""
    size = face.shape[0]
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.GaussianBlur(small, (0, 0), 3.0)
    # A white mask should not outshine the brightest things in a dim photo.
    sub = np.sort(small[::2, ::2], axis=None)
    exposure = float(np.clip(sub[int(0.97 * (sub.size - 1))] / 235.0, 0.35, 1.03))
    # Light relative to the lower face (where masks sit in the canonical crop), softened.
    mean = max(float(low[34:60, 16:48].mean()), 1.0)
    rel = np.clip(low * (1.0 / mean), 0.55, 1.35) ** 0.8 * exposure
    shade = cv2.resize(rel, (size, size), interpolation=cv2.INTER_LINEAR)
    c0, c1 = size // 4, 3 * size // 4  # the face's middle is enough to judge the grain
    g = gray[c0:c1:2, c0:c1:2].astype(np.float32)
    res = np.abs(g - cv2.blur(g, (3, 3))).ravel()
    noise = float(np.partition(res, res.size // 2)[res.size // 2] * 1.2)
    sample = face[::8, ::8].astype(np.int16)
    grayscale = bool(np.abs(sample - sample[..., :1]).max() <= 2)
    return FaceContext(shade, exposure, noise, grayscale)


@dataclass(frozen=True)
class Rendered:
    masked: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) uint8, 0 or 255
    meta: dict


def render_mask(face: np.ndarray, points: np.ndarray, template: Template,
                rng: np.random.Generator, *, source_scale: float = 1.0,
                context: FaceContext | None = None) -> Rendered:
    """Draw ``template`` on an aligned ``face`` (RGB uint8) with landmarks ``points`` (478, 3)
    in the crop's pixels. ``source_scale`` is how much alignment enlarged the source (> 1 for
    low-resolution sources), used to soften the mask to the photo's sharpness; ``context`` is
    :func:`prepare_face` of the face, when the caller renders several masks on it."""
    size = face.shape[0]
    ctx = context if context is not None else prepare_face(face)
    tex = draw_texture(template.texture)
    th, tw = tex.shape[:2]
    mesh = template_mesh(template, REFINE)
    frame = face_frame(points)
    nodes = mesh_nodes(mesh, points, frame)
    box = bounding_box(nodes[:, :2], size)
    maps = warp_maps(mesh, nodes, box, (th, tw))
    if maps is None:
        raise RenderError("mask-off-crop", "the mask grid covers no pixel of the crop")
    mx, my = maps
    warped = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=(0, 0, 0, 0))
    detail, alpha = warped[..., 0], warped[..., 1]

    # Appearance: base colour (jittered), pattern, fabric detail, then the face's own light.
    base = np.array(template.palette[rng.integers(len(template.palette))], np.float32)
    base = np.clip(base * rng.uniform(0.92, 1.06) + rng.normal(0, 4, 3), 0, 255)
    base = base.astype(np.float32)
    if ctx.grayscale:
        base[:] = float(base @ np.array([0.299, 0.587, 0.114], np.float32))
    pattern = template.patterns[rng.integers(len(template.patterns))]
    x0, y0, x1, y1 = box
    shade = (detail * ctx.shade[y0:y1, x0:x1])[..., None]
    if pattern == "plain":
        colour = shade * base
    else:
        colour = apply_pattern(pattern, base, mx * (1 / (tw - 1)), my * (1 / (th - 1)),
                               template.texture.aspect, rng)
        if ctx.grayscale:
            colour[:] = (colour @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        colour *= shade

    # Match the photo: soften when the source was upscaled, add its grain.
    blur = max(0.45, 0.5 * source_scale)
    masked = face.copy()
    mask = np.zeros(face.shape[:2], np.uint8)
    if template.loops == "ear":
        loop_col = np.clip(base * 0.95 + 12, 0, 255) * ctx.exposure
        for lbox, loop_alpha in ear_loops(nodes.reshape(*mesh.shape, 3), points, frame, size):
            _composite(masked, mask, lbox, loop_alpha, loop_col, blur)
    _composite(masked, mask, box, alpha, colour, blur,
               rng.standard_normal(3, dtype=np.float32) if ctx.noise > 0.3 else None,
               ctx.noise, ctx.grayscale)
    meta = {"colour": "#{:02x}{:02x}{:02x}".format(*(int(c) for c in base)), "pattern": pattern,
            "coverage": round(float(np.count_nonzero(mask)) / mask.size, 5)}
    return Rendered(masked, mask, meta)


def _composite(img: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int],
               alpha: np.ndarray, colour: np.ndarray, blur: float,
               noise_pick: np.ndarray | None = None, noise: float = 0.0,
               mono: bool = False) -> None:
    """Blend a layer into ``img`` in place over ``box``; mark touched pixels in ``mask``.

    ``colour`` is an (h, w, 3) image or one RGB triple. Alpha below
    ``ALPHA_MIN`` is zeroed, so every pixel outside ``mask`` keeps its exact value.
    """
    x0, y0, x1, y1 = box
    alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    alpha[alpha < ALPHA_MIN] = 0.0
    crop = img[y0:y1, x0:x1].astype(np.float32)
    if np.ndim(colour) == 1:  # one colour (loops)
        rgb = colour
        colour = np.empty_like(crop)
        colour[:] = rgb
    else:
        colour = cv2.GaussianBlur(colour, (0, 0), blur)
        if noise_pick is not None:
            grain = _grain(colour.shape[:2], noise_pick)
            colour += (grain[..., :1] if mono else grain) * noise
    # cv2.blendLinear: (a * colour + (1 - a) * crop), one pass in C; a == 0 gives crop exactly.
    out = cv2.blendLinear(colour, crop, alpha, 1.0 - alpha)
    img[y0:y1, x0:x1] = cv2.convertScaleAbs(out)
    mask[y0:y1, x0:x1] |= (alpha > 0).view(np.uint8) * np.uint8(255)


_GRAIN = np.random.default_rng(7).standard_normal((512, 512, 3)).astype(np.float32)


def _grain(shape: tuple[int, int], pick: np.ndarray) -> np.ndarray:
    """Gaussian grain: a window of a fixed noise tile at an offset drawn by the caller's rng
    (as random as fresh noise for this purpose, and ~50x cheaper)."""
    h, w = shape
    if h > _GRAIN.shape[0] or w > _GRAIN.shape[1]:
        return np.tile(_GRAIN, (h // 512 + 1, w // 512 + 1, 1))[:h, :w]
    oy = int(abs(pick[0]) * 1e4) % (_GRAIN.shape[0] - h + 1)
    ox = int(abs(pick[1]) * 1e4) % (_GRAIN.shape[1] - w + 1)
    return _GRAIN[oy:oy + h, ox:ox + w]


def apply_pattern(pattern: str, base: np.ndarray, u: np.ndarray, v: np.ndarray, aspect: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Per-pixel RGB (h, w, 3) float32 of a fabric pattern at texture coordinates (u, v)."""
    h, w = u.shape
    out = np.empty((h, w, 3), np.float32)
    out[:] = base
    if pattern == "plain":
        return out
    second = _contrast_colour(base, rng)
    x, y = u * aspect, v  # isotropic texture units
    if pattern == "stripes":
        freq = rng.uniform(7, 16)
        ang = rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4])
        t = x * np.cos(ang) + y * np.sin(ang)
        sel = (np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3)) > rng.uniform(-0.3, 0.5))
    elif pattern == "checks":
        freq = rng.uniform(5, 11)
        sel = (np.sin(2 * np.pi * freq * x) > 0) ^ (np.sin(2 * np.pi * freq * y) > 0)
    elif pattern == "dots":
        freq = rng.uniform(7, 14)
        fx, fy = (x * freq) % 1 - 0.5, (y * freq + 0.5 * (np.floor(x * freq) % 2)) % 1 - 0.5
        sel = fx**2 + fy**2 < rng.uniform(0.04, 0.09)
    elif pattern == "floral":
        freq = rng.uniform(4, 7)
        cx, cy = (x * freq) % 1 - 0.5, (y * freq) % 1 - 0.5
        r, th = np.hypot(cx, cy), np.arctan2(cy, cx)
        sel = r < 0.18 + 0.12 * np.cos(5 * th)
        sel |= r < 0.06
    elif pattern == "camo":
        sel = np.zeros((h, w), bool)
        cols = [second, np.clip(base * 0.6, 0, 255), np.clip(base * 1.2 + 15, 0, 255)]
        for col in cols:
            field = cv2.resize(rng.normal(0, 1, (6, 9)).astype(np.float32), (64, 40),
                               interpolation=cv2.INTER_CUBIC)
            fm = cv2.remap(field, u * 63, v * 39, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
            s = fm > 0.45
            out[s] = col
        return out
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    out[sel] = second
    return out


def _contrast_colour(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lum = float(base @ np.array([0.299, 0.587, 0.114], np.float32))
    if lum > 140:
        return np.clip(rng.uniform(20, 120, 3), 0, 255).astype(np.float32)
    return np.clip(rng.uniform(150, 245, 3), 0, 255).astype(np.float32)


def ear_loops(nodes: np.ndarray, points: np.ndarray,
              frame: tuple[np.ndarray, np.ndarray, float], size: int
              ) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Thin elastic loops from the mask's side edges to the ears, drawn anti-aliased with
    sub-pixel precision: ``(box, alpha)`` per visible side (the far side of a turned head gets
    none, the face hides it there)."""
    xdir, ydir, iod = frame
    thick = max(1, round(0.022 * iod))
    t = np.linspace(0, 1, 16)[:, None]
    out = []
    for side, contour, ear_lm in ((0, 234, 127), (-1, 454, 356)):
        col = nodes[:, side, :2]
        outward = -xdir if side == 0 else xdir
        width = abs(float((points[contour, :2] - points[4, :2]) @ xdir))
        if width < 0.45 * iod:
            continue
        ear = points[ear_lm, :2] + outward * 0.12 * iod
        ear_low = points[contour, :2] + outward * 0.14 * iod + ydir * 0.25 * iod
        curves = []
        for start, end in ((col[0], ear), (col[-1], ear_low)):
            ctrl = (start + end) / 2 + outward * 0.08 * iod
            curves.append((1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end)
        box = bounding_box(np.concatenate(curves), size, margin=thick + 2)
        x0, y0, x1, y1 = box
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for c in curves:
            pts = np.round((c - [x0, y0]) * 16).astype(np.int32)
            cv2.polylines(layer, [pts], False, 255, thick, cv2.LINE_AA, shift=4)
        out.append((box, layer.astype(np.float32) * (1.0 / 255.0)))
    return out
