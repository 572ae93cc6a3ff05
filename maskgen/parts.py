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

from .facepoints import LEFT_EYE, MOUTH, RIGHT_EYE
from .templates import Part

# Sub-pixels a side: the parts' edges are anti-aliased by averaging SS x SS rays a pixel.
SS = 3
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


def _hits(base: np.ndarray, axis: np.ndarray, r: float, length: float, px: np.ndarray,
          py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rays along +z through sub-pixel centres (px, py) against a closed cylinder: ``(t, nx,
    ny, nz, tag)`` per ray, ``t`` the depth of the nearest hit (inf for a miss), the outward
    normal there, ``tag`` packing the hit's place for detailing: 0 side, 1 front cap, 2 base
    cap, then + ``s / length`` (side: how far along) or + ``rho / r`` (caps: off centre) / 2."""
    ax, ay, az = (float(v) for v in axis)
    wx, wy, wz = px - base[0], py - base[1], -float(base[2])  # ray origin at z = 0, minus base
    # The side: |q - (q.a) a| = r for q = w + t e_z.
    wa = wx * ax + wy * ay + wz * az
    ux, uy, uz = wx - wa * ax, wy - wa * ay, wz - wa * az
    vx, vy, vz = -az * ax, -az * ay, 1.0 - az * az
    qa = vx * vx + vy * vy + vz * vz
    qb = ux * vx + uy * vy + uz * vz
    qc = ux * ux + uy * uy + uz * uz - r * r
    disc = qb * qb - qa * qc
    t = np.full(px.shape, np.inf)
    tag = np.zeros(px.shape)
    nx = np.zeros(px.shape)
    ny = np.zeros(px.shape)
    nz = np.zeros(px.shape)
    if qa > 1e-9:
        ok = disc >= 0
        ts = (-qb - np.sqrt(np.maximum(disc, 0))) / qa
        s = wa + ts * az
        ok &= (s >= 0) & (s <= length)
        t = np.where(ok, ts, t)
        sx, sy, sz = wx - s * ax, wy - s * ay, wz + ts - s * az
        norm = np.sqrt(sx * sx + sy * sy + sz * sz) + 1e-9
        nx, ny, nz = (np.where(ok, sx / norm, 0), np.where(ok, sy / norm, 0),
                      np.where(ok, sz / norm, 0))
        tag = np.where(ok, np.clip(s / length, 0, 1) / 2, tag)
    for cap, sign, code in ((length, 1.0, 1.0), (0.0, -1.0, 2.0)):
        if abs(az) < 1e-6:
            continue
        tc = (cap - wa) / az
        cx, cy, cz = wx - cap * ax, wy - cap * ay, wz + tc - cap * az
        rho = np.sqrt(cx * cx + cy * cy + cz * cz)
        # A cap is seen from outside only: its normal (sign * axis) must face the camera.
        ok = (rho <= r) & (tc < t) & (sign * az < 0)
        t = np.where(ok, tc, t)
        nx, ny, nz = (np.where(ok, sign * ax, nx), np.where(ok, sign * ay, ny),
                      np.where(ok, sign * az, nz))
        tag = np.where(ok, code + np.clip(rho / r, 0, 1) / 2, tag)
    return t, nx, ny, nz, tag


def _detail(tag: np.ndarray, face: str, ux: np.ndarray, r_px: float) -> np.ndarray:
    """Brightness of each hit from the part's relief: a bevel at the front rim, a seam round
    the side near the front, rings or slots on the front cap."""
    k = np.ones(tag.shape)
    side = tag < 1.0
    s = tag * 2
    k = np.where(side & (s > 0.8) & (s < 0.86), 0.72, k)  # the seam of cap and body
    front = (tag >= 1.0) & (tag < 2.0)
    rho = (tag - 1.0) * 2
    k = np.where(front & (rho > 0.86), 0.78 + 0.3 * (rho - 0.86) / 0.14, k)  # bevelled rim
    if face == "grille":
        rings = (rho > 0.2) & (rho < 0.74) & (np.sin(rho * math.pi * 9.0) > 0.35)
        k = np.where(front & rings, 0.8, k)
        k = np.where(front & (rho <= 0.14), 0.82, k)  # the hub
    elif face == "slots":
        slot = (np.sin(ux / max(r_px, 1e-6) * math.pi * 3.5) > 0.45) & (rho < 0.7)
        k = np.where(front & slot, 0.55, k)
    return k


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
    sub = (np.arange(SS) + 0.5) / SS
    py = (np.arange(y0, y1)[:, None] + sub[None, :]).reshape(-1)  # pixel centres at + 0.5
    px = (np.arange(x0, x1)[:, None] + sub[None, :]).reshape(-1)
    gx, gy = np.meshgrid(px - 0.5, py - 0.5)
    depth = np.full(gx.shape, np.inf)
    painted = np.zeros(gx.shape, bool)
    rgb = np.zeros((*gx.shape, 3))
    lx, ly, lz = (float(v) for v in light)
    # The highlight's half vector: between the light and the camera (at -z).
    hx, hy, hz = lx, ly, lz - 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    hx, hy, hz = hx / hn, hy / hn, hz / hn
    if surface is not None:
        # A part's base is sunk in the mask: only what lies well behind the surface is hidden.
        depth = surface_depth(*surface, x0, y0, h, w) + HIDDEN_BEHIND * iod
    for (base, axis, r, length), part, albedo in zip(shapes, parts, colours, strict=True):
        t, nx, ny, nz, tag = _hits(base, axis, r, length, gx, gy)
        near = t < depth
        if not near.any():
            continue
        diffuse = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
        spec = np.maximum(nx * hx + ny * hy + nz * hz, 0.0) ** SHININESS
        # Across the front cap: where the hit lies in the cap's own plane (for the slots).
        ux = (gx - base[0]) * axes[0][0] + (gy - base[1]) * axes[0][1]
        k = (AMBIENT + DIFFUSE * diffuse) * _detail(tag, part.face, ux, r)
        for ch in range(3):
            val = (albedo[ch] * k + SPECULAR * spec) * exposure
            rgb[..., ch] = np.where(near, val, rgb[..., ch])
        depth = np.where(near, t, depth)
        painted |= near
    hit = painted
    if not hit.any():
        return None
    # Average each pixel's SS x SS rays: coverage as alpha, colour over the rays that hit.
    cover = hit.reshape(h, SS, w, SS).mean((1, 3))
    total = (rgb * hit[..., None]).reshape(h, SS, w, SS, 3).sum((1, 3))
    count = hit.reshape(h, SS, w, SS).sum((1, 3))[..., None]
    fill = rgb[hit].mean(0)  # colour where no ray hit: keeps blurred edges from darkening
    colour = np.where(count > 0, total / np.maximum(count, 1), fill)
    layer = np.dstack([colour, cover]).astype(np.float32)
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
