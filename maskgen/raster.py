"""The per-pixel core of rendering, compiled with numba: rasterise a template's triangles over a
face, sample its texture and paint its fabric pattern, in one pass over the mask's box.

Done with numpy this took ~30 array passes and ~2 ms a mask; one compiled loop takes a tenth of
that. Everything here is a pure function of its arrays. Patterns (ids in ``PATTERNS``) are
functions of the texture coordinates, so they bend with the mask.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

PATTERNS = ("plain", "stripes", "checks", "dots", "floral", "camo")


@njit(cache=True, nogil=True)
def _pattern(pid: int, u: float, v: float, aspect: float, p: np.ndarray,
             fields: np.ndarray) -> int:
    """Which colour a pattern puts at (u, v): 0 = base, 1.. = ``second`` colours."""
    x = u * aspect
    y = v
    if pid == 1:  # stripes: p = freq, cos and sin of the angle, phase; stripe = [p4, p5)
        t = (p[0] * (x * p[1] + y * p[2]) + p[3]) % 1.0
        return 1 if p[4] <= t < p[5] else 0
    if pid == 2:  # checks: p = freq
        return int(math.floor(x * p[0]) + math.floor(y * p[0])) & 1
    if pid == 3:  # dots on a staggered grid: p = freq, radius^2
        gx = x * p[0]
        fx = gx % 1.0 - 0.5
        fy = (y * p[0] + 0.5 * (math.floor(gx) % 2)) % 1.0 - 0.5
        return 1 if fx * fx + fy * fy < p[1] else 0
    if pid == 4:  # five-petal flowers: p = freq
        cx = (x * p[0]) % 1.0 - 0.5
        cy = (y * p[0]) % 1.0 - 0.5
        r2 = cx * cx + cy * cy
        if r2 >= 0.09:  # beyond the longest petal (0.3)
            return 0
        if r2 < 0.0036:  # the flower's heart (0.06)
            return 1
        # Petal edge r = 0.18 + 0.12 cos(5 theta); cos(5 theta) is the Chebyshev polynomial
        # T5 of cos(theta) = cx / r, which spares an atan2 and a cos per pixel.
        r = math.sqrt(r2)
        c = cx / r
        c2 = c * c
        return 1 if r < 0.18 + 0.12 * (c * (5.0 + c2 * (16.0 * c2 - 20.0))) else 0
    if pid == 5:  # camouflage: blobs where smooth random fields exceed a level, layered
        k = 0
        fh, fw = fields.shape[1], fields.shape[2]
        for i in range(fields.shape[0]):
            if _sample_field(fields[i], u * (fw - 1), v * (fh - 1)) > 0.45:
                k = i + 1
        return k
    return 0


@njit(cache=True, nogil=True)
def _sample_field(f: np.ndarray, x: float, y: float) -> float:
    h, w = f.shape
    x = min(max(x, 0.0), w - 1.001)
    y = min(max(y, 0.0), h - 1.001)
    x0 = int(x)
    y0 = int(y)
    fx = x - x0
    fy = y - y0
    return ((1 - fy) * ((1 - fx) * f[y0, x0] + fx * f[y0, x0 + 1])
            + fy * ((1 - fx) * f[y0 + 1, x0] + fx * f[y0 + 1, x0 + 1]))


@njit(cache=True, nogil=True)
def _fill_triangle(owner: np.ndarray, t: np.ndarray, k: int, x0: int, y0: int) -> None:
    """Write ``k`` into the pixels (centres at integer coordinates) inside triangle ``t``,
    row by row: each edge bounds x on a row, so only the covered span is visited."""
    h, w = owner.shape
    ys = min(t[0, 1], t[1, 1], t[2, 1])
    ye = max(t[0, 1], t[1, 1], t[2, 1])
    r0 = max(int(math.ceil(ys)) - y0, 0)
    r1 = min(int(math.floor(ye)) - y0, h - 1)
    for r in range(r0, r1 + 1):
        py = r + y0
        lo = -1e30
        hi = 1e30
        # Intersect the row with each edge's inner side: the span is [lo, hi].
        inside_all = True
        for e in range(3):
            ax, ay = t[e, 0], t[e, 1]
            bx, by = t[(e + 1) % 3, 0], t[(e + 1) % 3, 1]
            cx, cy = t[(e + 2) % 3, 0], t[(e + 2) % 3, 1]
            # f(x) = (bx-ax)(py-ay) - (by-ay)(x-ax); the inner side has the sign of f(c).
            fc = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
            slope = -(by - ay)
            const = (bx - ax) * (py - ay) + (by - ay) * ax
            if fc < 0:
                slope = -slope
                const = -const
            tol = 1e-7 * abs(fc)
            if slope > 0:
                lo = max(lo, (-const - tol) / slope)
            elif slope < 0:
                hi = min(hi, (-const - tol) / slope)
            elif const < -tol:
                inside_all = False
        if not inside_all or lo > hi:
            continue
        c0 = max(int(math.ceil(lo)) - x0, 0)
        c1 = min(int(math.floor(hi)) - x0, w - 1)
        for c in range(c0, c1 + 1):
            owner[r, c] = k


@njit(cache=True, nogil=True)
def paint_layer(x0: int, y0: int, x1: int, y1: int, tris: np.ndarray, coef: np.ndarray,
                order: np.ndarray, tex: np.ndarray, tex_scale: np.ndarray, shade: np.ndarray,
                colours: np.ndarray, pid: int, params: np.ndarray, fields: np.ndarray,
                aspect: float, feature_colour: np.ndarray, sheen: float = 0.0) -> np.ndarray:
    """Colour and alpha ``(h, w, 4)`` of a mask over the box [x0, x1) x [y0, y1) (one array, so
    that softening it is one filter pass).

    ``tris`` (T, 3, 2) are face-space triangles and ``coef`` (T, 9) their affine maps to texture
    pixels (u = c0 x + c1 y + c2, v = c3 x + c4 y + c5) and of the mask's own shading
    (s = c6 x + c7 y + c8); they are painted in ``order`` (far to near), later ones covering
    earlier ones. ``tex`` (th, tw, 3 or 6), fixed point times ``tex_scale`` per channel, holds
    fabric detail, alpha, feature weight (and an RGB albedo for picture templates); ``shade``
    is the face's light over the whole crop; ``colours`` (K, 3) the base colour then the
    pattern's other colours; features (valves...) get ``feature_colour``.

    ``sheen`` (colour levels) is light the surface reflects whatever its dye: it scales the
    fabric's shading (folds, seams, the turn of the cheeks) on top of the dyed colour's own, so
    a black mask still shows its folds, as real ones do in photos.
    """
    h = y1 - y0
    w = x1 - x0
    owner = np.full((h, w), -1, np.int32)
    for k in order:
        _fill_triangle(owner, tris[k], k, x0, y0)

    th, tw = tex.shape[0], tex.shape[1]
    layer = np.zeros((h, w, 4), np.float32)
    has_albedo = tex.shape[2] >= 6
    inv_u = 1.0 / (tw - 1)
    inv_v = 1.0 / (th - 1)
    for j in range(h):
        py = j + y0
        for i in range(w):
            k = owner[j, i]
            if k < 0:
                continue
            px = i + x0
            tu = coef[k, 0] * px + coef[k, 1] * py + coef[k, 2]
            tv = coef[k, 3] * px + coef[k, 4] * py + coef[k, 5]
            # Bilinear texture sample (detail, alpha); zero outside the texture.
            if tu < 0.0 or tv < 0.0 or tu > tw - 1 or tv > th - 1:
                continue
            ix = min(int(tu), tw - 2)
            iy = min(int(tv), th - 2)
            fx = tu - ix
            fy = tv - iy
            w00 = (1 - fx) * (1 - fy)
            w01 = fx * (1 - fy)
            w10 = (1 - fx) * fy
            w11 = fx * fy
            a = (w00 * tex[iy, ix, 1] + w01 * tex[iy, ix + 1, 1] + w10 * tex[iy + 1, ix, 1]
                 + w11 * tex[iy + 1, ix + 1, 1]) * tex_scale[1]
            if a <= 0.0:
                continue
            d = (w00 * tex[iy, ix, 0] + w01 * tex[iy, ix + 1, 0] + w10 * tex[iy + 1, ix, 0]
                 + w11 * tex[iy + 1, ix + 1, 0]) * tex_scale[0]
            f = (w00 * tex[iy, ix, 2] + w01 * tex[iy, ix + 1, 2] + w10 * tex[iy + 1, ix, 2]
                 + w11 * tex[iy + 1, ix + 1, 2]) * tex_scale[2]
            lit = d * (coef[k, 6] * px + coef[k, 7] * py + coef[k, 8])  # surface's own shading
            light = shade[py, px]
            glint = sheen * (lit - 1.0)  # mean zero: lightens lit folds, darkens the shadowed
            c = 0
            if pid != 0 and f < 1.0:
                c = _pattern(pid, tu * inv_u, tv * inv_v, aspect, params, fields)
            layer[j, i, 3] = a
            for ch in range(3):
                albedo = 1.0
                if has_albedo:
                    albedo = (w00 * tex[iy, ix, 3 + ch] + w01 * tex[iy, ix + 1, 3 + ch]
                              + w10 * tex[iy + 1, ix, 3 + ch]
                              + w11 * tex[iy + 1, ix + 1, 3 + ch]) * tex_scale[3 + ch]
                dyed = ((1.0 - f) * colours[c, ch] + f * feature_colour[ch]) * albedo
                layer[j, i, ch] = max(light * (dyed * lit + glint), 0.0)
    return layer


@njit(cache=True, nogil=True)
def darken(img: np.ndarray, mask: np.ndarray, shadow: np.ndarray, y0: int, x0: int,
           fade: np.ndarray, threshold: float) -> None:
    """Darken ``img`` (S, S, 3 uint8, in place) over the box of ``shadow`` (h, w) placed at
    (``y0``, ``x0``): each pixel is multiplied by ``1 - shadow * ramp`` and rounded, where
    ``fade`` = (x, y, down x, down y, 1 / length, strength) ramps from 0 on the line through
    (x, y) across ``down`` to ``strength`` a length further. Darkening under ``threshold`` is
    skipped. Pixels it changes are set to 255 in ``mask`` (S, S); all others keep their bytes.
    One pass, where numpy and OpenCV took eight."""
    h, w = shadow.shape
    fx, fy, dx, dy, inv, strength = fade[0], fade[1], fade[2], fade[3], fade[4], fade[5]
    for j in range(h):
        py = j + y0
        row = (py - fy) * dy
        for i in range(w):
            s = shadow[j, i]
            if s * strength < threshold:
                continue
            px = i + x0
            r = ((px - fx) * dx + row) * inv
            if r <= 0.0:
                continue
            d = s * min(r, 1.0) * strength
            if d < threshold:
                continue
            keep = 1.0 - d  # in (0, 1]: the products round into 0..255
            a, b, c = img[py, px, 0], img[py, px, 1], img[py, px, 2]
            na, nb, nc = (np.uint8(a * keep + 0.5), np.uint8(b * keep + 0.5),
                          np.uint8(c * keep + 0.5))
            if na != a or nb != b or nc != c:
                img[py, px, 0], img[py, px, 1], img[py, px, 2] = na, nb, nc
                mask[py, px] = 255


@njit(cache=True, nogil=True)
def blend_layer(img: np.ndarray, mask: np.ndarray, y0: int, x0: int, layer: np.ndarray,
                grain: np.ndarray, noise: float, mono: bool, alpha_min: float) -> None:
    """Blend a ``layer`` (h, w, 4: colour, alpha) into ``img`` (S, S, 3 uint8, in place) at
    (``y0``, ``x0``), with ``grain`` (h, w, 3) times ``noise`` added to the
    colour (its first channel only when ``mono``; ``grain`` is not read when ``noise`` is 0).
    Pixels with alpha under ``alpha_min`` are left as they are; the others are set to 255 in
    ``mask``. One pass, where OpenCV and numpy took six."""
    h, w = layer.shape[:2]
    for j in range(h):
        py = j + y0
        for i in range(w):
            a = layer[j, i, 3]
            if a < alpha_min:
                continue
            px = i + x0
            for ch in range(3):
                g = grain[j, i, 0 if mono else ch] * noise if noise != 0.0 else 0.0
                v = a * (layer[j, i, ch] + g) + (1.0 - a) * img[py, px, ch]
                img[py, px, ch] = np.uint8(min(max(v + 0.5, 0.0), 255.0))
            mask[py, px] = 255
