"""Rigid parts of a mask (filter cartridges, valves): shaded 3D solids placed by the head's pose.

A warped texture bends with the face: a cartridge painted into it squashes into a sliver when
the head turns, lies flat on the cheek and takes the rubber's folds. Real cartridges are rigid
cylinders that stand off the mask and keep their shape. Here each part is a cylinder in the
crop's 3D frame (x, y in pixels, z FaceMesh's depth in the same unit, the camera looking along
+z): its base on the mask's surface at a landmark anchor, its axis out of the face (turned
sideways and down by the template's angles, in the face's own frame, so the head's yaw, pitch
and roll turn it). It is drawn by casting one ray per sub-pixel (orthographic, as the crop's
projection is) against its side and end caps, shaded with the face's light: a dull plastic with
a faint broad highlight, a bevelled rim and a grille or slots on its front cap.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit

from .facepoints import LEFT_EYE, MOUTH, RIGHT_EYE
from .templates import Part

# Sub-pixels a side: the parts' edges are anti-aliased by averaging SS x SS rays a pixel
# (then softened with the mask: 3 x 3 looked no different and cost twice as much).
SS = 2
# Shading: the share of light every surface gets, the direct light's, the highlight's
# strength (colour levels) and sharpness: a matte plastic.
AMBIENT = 0.38
DIFFUSE = 0.72
SPECULAR = 22.0
SHININESS = 10.0
# Darkening of the mask under a part (its contact shadow) and the shadow's softness, in
# eye distances.
SHADOW_STRENGTH = 0.45
# How far behind the mask's surface (eye distances) a part's point must lie to be hidden: the
# surface runs through the landmarks, under the rubber, and the parts' bases sit in it.
HIDDEN_BEHIND = 0.2
SHADOW_SIGMA = 0.06


def face_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face's 3D frame from its landmarks (crop pixels, z depth): ``x`` along the eye line
    (towards the image's right on a frontal face), ``y`` down the face, ``n`` out of the back of
    the head (away from the camera on a frontal face); unit vectors, orthogonal."""
    le = points[list(LEFT_EYE)].mean(0)
    re = points[list(RIGHT_EYE)].mean(0)
    mouth = points[list(MOUTH)].mean(0)
    x = (re - le) / (np.linalg.norm(re - le) + 1e-9)
    down = mouth - (le + re) / 2
    y = down - (down @ x) * x
    y /= np.linalg.norm(y) + 1e-9
    return x, y, np.cross(x, y)


def placed(part: Part, points: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray],
           iod: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(base, axis, radius, length)`` of a part on a face, in crop pixels: the base centre,
    the unit axis from the base to the front cap."""
    x, y, n = axes
    at = points[list(part.at.indices)].T @ np.array(part.at.weights)
    at = at + iod * (part.at.offset[0] * x + part.at.offset[1] * y)
    middle = points[list(MOUTH)].mean(0)
    side = 1.0 if (at - middle) @ x >= 0 else -1.0
    out, down = math.radians(part.out), math.radians(part.down)
    axis = (math.cos(out) * math.cos(down) * -n + math.sin(out) * side * x
            + math.cos(out) * math.sin(down) * y)
    axis /= np.linalg.norm(axis)
    return at - n * part.standoff * iod, axis, part.radius * iod, part.length * iod


FACES = ("grille", "slots", "plain")


@njit(cache=True, nogil=True)
def _cast(base: np.ndarray, axis: np.ndarray, r: float, length: float, xs: np.ndarray,
          ys: np.ndarray, rays: np.ndarray, depth: np.ndarray, rgb: np.ndarray,
          shading: np.ndarray, face: int, across: np.ndarray) -> None:  # pragma: no cover
    """Cast the rays at sub-pixel centres (``xs`` columns, ``ys`` rows; only those in ``rays``:
    first and last + 1 row, then column) along +z against one closed cylinder, and where it is
    the nearest thing yet (``depth``), write its shaded colour into ``rgb`` and its depth.
    ``shading``: albedo (3), light (3), highlight half vector (3), exposure; ``across``: the
    face's eye-line direction (for the slots)."""
    ax, ay, az = axis[0], axis[1], axis[2]
    vx, vy, vz = -az * ax, -az * ay, 1.0 - az * az
    qa = vx * vx + vy * vy + vz * vz
    for j in range(rays[0], rays[1]):
        py = ys[j]
        for i in range(rays[2], rays[3]):
            px = xs[i]
            wx, wy, wz = px - base[0], py - base[1], -base[2]  # the ray's origin at z = 0
            wa = wx * ax + wy * ay + wz * az
            best = depth[j, i]
            kind = -1
            pos = 0.0
            nx = ny = nz = 0.0
            if qa > 1e-9:  # the side: |q - (q.a) a| = r for q = w + t e_z
                ux, uy, uz = wx - wa * ax, wy - wa * ay, wz - wa * az
                qb = ux * vx + uy * vy + uz * vz
                disc = qb * qb - qa * (ux * ux + uy * uy + uz * uz - r * r)
                if disc >= 0.0:
                    t = (-qb - math.sqrt(disc)) / qa
                    s = wa + t * az
                    if 0.0 <= s <= length and t < best:
                        sx, sy, sz = wx - s * ax, wy - s * ay, wz + t - s * az
                        n = math.sqrt(sx * sx + sy * sy + sz * sz) + 1e-9
                        best, kind, pos = t, 0, s / length
                        nx, ny, nz = sx / n, sy / n, sz / n
            if abs(az) > 1e-6:
                for c in range(2):  # the front cap, then the base's
                    cap = length if c == 0 else 0.0
                    sign = 1.0 if c == 0 else -1.0
                    if sign * az >= 0.0:  # seen from behind: hidden by the side
                        continue
                    t = (cap - wa) / az
                    if t >= best:
                        continue
                    cx, cy, cz = wx - cap * ax, wy - cap * ay, wz + t - cap * az
                    rho = math.sqrt(cx * cx + cy * cy + cz * cz)
                    if rho <= r:
                        best, kind, pos = t, 1 + c, rho / r
                        nx, ny, nz = sign * ax, sign * ay, sign * az
            if kind < 0:
                continue
            k = 1.0  # the relief
            if kind == 0:
                if 0.8 < pos < 0.86:  # the seam of cap and body
                    k = 0.72
            elif kind == 1:
                if pos > 0.86:  # the bevelled rim
                    k = 0.78 + 0.3 * (pos - 0.86) / 0.14
                elif face == 0:
                    if pos <= 0.14:  # the hub
                        k = 0.82
                    elif 0.2 < pos < 0.74 and math.sin(pos * math.pi * 9.0) > 0.35:
                        k = 0.8
                elif face == 1 and pos < 0.7:
                    u = (wx * across[0] + wy * across[1]) / r
                    if math.sin(u * math.pi * 3.5) > 0.45:
                        k = 0.55
            diffuse = max(nx * shading[3] + ny * shading[4] + nz * shading[5], 0.0)
            spec = max(nx * shading[6] + ny * shading[7] + nz * shading[8], 0.0) ** SHININESS
            k *= AMBIENT + DIFFUSE * diffuse
            for ch in range(3):
                rgb[j, i, ch] = (shading[ch] * k + SPECULAR * spec) * shading[9]
            depth[j, i] = best


@njit(cache=True, nogil=True)
def _resolve(rgb: np.ndarray, layer: np.ndarray) -> bool:  # pragma: no cover
    """Average each pixel's SS x SS rays (``rgb``: NaN where a ray hit nothing) into ``layer``
    (h, w, 4): the share that hit as alpha, the mean colour of those as colour; pixels no ray
    hit take the mean colour of all hits, so that blurring the layer does not darken its edges.
    Whether any ray hit."""
    h, w = layer.shape[0], layer.shape[1]
    fill = np.zeros(3)
    hits = 0
    for j in range(h):
        for i in range(w):
            n = 0
            r = g = b = 0.0
            for dj in range(SS):
                for di in range(SS):
                    y, x = j * SS + dj, i * SS + di
                    if not math.isnan(rgb[y, x, 0]):
                        n += 1
                        r += rgb[y, x, 0]
                        g += rgb[y, x, 1]
                        b += rgb[y, x, 2]
            if n:
                fill[0] += r
                fill[1] += g
                fill[2] += b
                hits += n
                layer[j, i, 0] = r / n
                layer[j, i, 1] = g / n
                layer[j, i, 2] = b / n
                layer[j, i, 3] = n / (SS * SS)
            else:
                layer[j, i, 3] = -1.0  # filled below
    if hits == 0:
        return False
    fill /= hits
    for j in range(h):
        for i in range(w):
            if layer[j, i, 3] < 0.0:
                layer[j, i, :3] = fill
                layer[j, i, 3] = 0.0
    return True


def surface_depth(nodes: np.ndarray, tris: np.ndarray, x0: int, y0: int, h: int, w: int
                  ) -> np.ndarray:
    """Depth of the mask's surface seen along each of the (h * SS, w * SS) rays of a box at
    (x0, y0), inf off the mask: its mesh (``nodes`` (N, 3) in crop pixels, ``tris`` (T, 3))
    drawn farthest triangle first, each at its mean depth (the mesh is fine enough that a
    triangle's own slope matters little against a part's size)."""
    out = np.full((h * SS, w * SS), np.inf, np.float32)
    xy = (nodes[:, :2] - (x0, y0)) * SS + (SS - 1) / 2  # sub-pixel rows and columns
    z = nodes[tris, 2].mean(1)
    k = 1 << 4
    for t in np.argsort(-z, kind="stable"):
        poly = np.round(xy[tris[t]] * k).astype(np.int32)
        cv2.fillConvexPoly(out, poly, float(z[t]), cv2.LINE_8, 4)
    return out


def render_parts(parts: tuple[Part, ...], points: np.ndarray, iod: float, size: int,
                 colours: list[np.ndarray], light: np.ndarray, exposure: float,
                 surface: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The parts drawn as one layer: ``(layer, box)``, ``layer`` (h, w, 4) float32 colour and
    alpha over ``box`` (x0, y0, x1, y1) of a ``size`` crop, or None when no part shows.
    ``colours``: each part's albedo (RGB, 0-255); ``light``: unit vector towards the light;
    ``surface``: the mask's mesh (nodes, triangles), which hides what lies behind it (the far
    cartridge of a turned head, behind the nose)."""
    axes = face_axes(points.astype(np.float64))
    shapes = [placed(p, points.astype(np.float64), axes, iod) for p in parts]
    corners = []
    for base, axis, r, length in shapes:
        for c in (base, base + axis * length):
            corners += [c[:2] - r, c[:2] + r]
    lo = np.floor(np.min(corners, 0)).astype(int) - 1
    hi = np.ceil(np.max(corners, 0)).astype(int) + 2
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), size), min(int(hi[1]), size)
    if x1 <= x0 or y1 <= y0:
        return None
    h, w = y1 - y0, x1 - x0
    # Sub-pixel ray positions: SS a pixel, centred on it (pixel centres are integers).
    xs = (np.arange(w * SS) + 0.5) / SS - 0.5 + x0
    ys = (np.arange(h * SS) + 0.5) / SS - 0.5 + y0
    depth = np.full((h * SS, w * SS), np.inf)
    if surface is not None:
        # A part's base is sunk in the mask: only what lies well behind the surface is hidden.
        depth[...] = surface_depth(*surface, x0, y0, h, w) + HIDDEN_BEHIND * iod
    rgb = np.full((h * SS, w * SS, 3), np.nan)
    lx, ly, lz = (float(v) for v in light)
    # The highlight's half vector: between the light and the camera (at -z).
    half = np.array([lx, ly, lz - 1.0])
    half /= np.linalg.norm(half)
    for (base, axis, r, length), part, albedo in zip(shapes, parts, colours, strict=True):
        # The rays near this part only: its two caps' centres, widened by its radius.
        front = base + axis * length
        lo = (np.minimum(base[:2], front[:2]) - r - 1 - (x0, y0)) * SS
        hi = (np.maximum(base[:2], front[:2]) + r + 1 - (x0, y0)) * SS
        rays = np.array([max(int(lo[1]), 0), min(int(hi[1]) + 1, h * SS),
                         max(int(lo[0]), 0), min(int(hi[0]) + 1, w * SS)], np.int64)
        shading = np.concatenate([np.asarray(albedo, np.float64), [lx, ly, lz], half,
                                  [exposure]])
        _cast(base, axis, r, length, xs, ys, rays, depth, rgb, shading, FACES.index(part.face),
              axes[0])
    layer = np.zeros((h, w, 4), np.float32)
    if not _resolve(rgb, layer):
        return None
    return layer, (x0, y0, x1, y1)


def contact_shadow(img: np.ndarray, mask: np.ndarray, layer: np.ndarray,
                   box: tuple[int, int, int, int], light: np.ndarray, iod: float) -> None:
    """Darken the mask (only pixels already in ``mask``) under the parts, in place: their
    coverage moved away from the light and softened."""
    x0, y0, x1, y1 = box
    sigma = SHADOW_SIGMA * iod
    pad = int(math.ceil(3 * sigma)) + 2
    h, w = img.shape[:2]
    rx0, ry0, rx1, ry1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)
    canvas = np.zeros((ry1 - ry0, rx1 - rx0), np.float32)
    canvas[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0] = layer[..., 3]
    away = -np.asarray(light[:2], np.float64)
    shift = away / max(np.linalg.norm(away), 1e-6) * 0.05 * iod
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    canvas = cv2.warpAffine(canvas, m, canvas.shape[::-1], flags=cv2.INTER_LINEAR)
    soft = cv2.GaussianBlur(canvas, (0, 0), max(sigma, 0.5))
    region = img[ry0:ry1, rx0:rx1]
    on_mask = mask[ry0:ry1, rx0:rx1] > 0
    k = np.where(on_mask, 1.0 - SHADOW_STRENGTH * soft, 1.0)[..., None]
    region[...] = np.round(region * k).astype(np.uint8)
