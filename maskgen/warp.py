"""Piecewise-affine warp of a template's texture onto a face, over a grid of triangles.

Each grid cell of a template is split into two triangles; each triangle gets its own affine map
from face pixels back to texture pixels, so the texture bends along the landmark mesh (a single
homography, the usual baseline, cannot follow a jaw or a turned head). Triangles are painted far
to near, and triangles seen from behind are dropped, so the near side of a turned face hides the
far side as it should.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from .facepoints import LEFT_EYE, RIGHT_EYE
from .templates import Template

_LEFT_EYE = np.array(LEFT_EYE)
_RIGHT_EYE = np.array(RIGHT_EYE)


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit vectors along the eye line and down the face, and the inter-ocular distance."""
    le = points[_LEFT_EYE, :2].sum(0) * (1.0 / len(LEFT_EYE))
    re = points[_RIGHT_EYE, :2].sum(0) * (1.0 / len(RIGHT_EYE))
    d = re - le
    iod = float(np.linalg.norm(d)) + 1e-6
    x = d / iod
    y = np.array([-x[1], x[0]], np.float32)
    return x.astype(np.float32), y, iod


def _catmull_rom_matrix(n: int, factor: int) -> np.ndarray:
    """The linear map from ``n`` control values to ``(n - 1) * factor + 1`` values on the
    Catmull-Rom curve through them (ends extended linearly)."""
    eye = np.eye(n, dtype=np.float64)
    ext = np.concatenate([2 * eye[:1] - eye[1:2], eye, 2 * eye[-1:] - eye[-2:-1]])
    rows = []
    for i in range(n - 1):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        for t in np.arange(factor) / factor:
            rows.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                               + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    rows.append(eye[-1])
    return np.array(rows)


@dataclass(frozen=True)
class TemplateMesh:
    """A template's dense (refined) grid, precomputed: everything but the face is constant."""

    shape: tuple[int, int]  # dense rows, columns
    # Node = spline @ anchors, anchor = the weighted sum of a few landmarks: two small steps
    # instead of one (N, 478) matrix that is almost all zeros (about as fast, 1/8 the memory).
    anchor_idx: np.ndarray  # (A, K) landmark indices of each anchor (padded with weight 0)
    anchor_w: np.ndarray  # (A, K) their weights
    spline: np.ndarray  # (N, A)
    offsets: np.ndarray  # (N, 2) in face units (eye-line, down)
    uv: np.ndarray  # (N, 2) texture coordinates in [0, 1]
    tris: np.ndarray  # (T, 3) node indices


@lru_cache(maxsize=64)
def template_mesh(t: Template, factor: tuple[int, int] = (1, 2)) -> TemplateMesh:
    """Refine a template's anchor grid by ``factor`` (rows, columns) with Catmull-Rom splines.
    Anchors are linear in the landmarks and the spline is linear in the anchors, so placing
    the dense grid on a face is two small linear maps (:func:`mesh_nodes`)."""
    R, C = t.shape
    flat = [a for row in t.anchors for a in row]
    width = max(len(a.indices) for a in flat)
    idx = np.zeros((R * C, width), np.intp)
    w = np.zeros((R * C, width))
    off = np.zeros((R * C, 2))
    for k, a in enumerate(flat):
        idx[k, :len(a.indices)] = a.indices
        w[k, :len(a.weights)] = a.weights
        off[k] = a.offset
    mr, mc = _catmull_rom_matrix(R, factor[0]), _catmull_rom_matrix(C, factor[1])
    dense = np.kron(mr, mc)  # (Rd*Cd, R*C)
    if t.uv_nodes is not None:
        coarse_uv = np.array(t.uv_nodes, np.float64).reshape(-1, 2)
    else:
        uu, vv = np.meshgrid(np.array(t.u), np.array(t.v))
        coarse_uv = np.stack([uu.ravel(), vv.ravel()], 1)
    uv = dense @ coarse_uv
    Rd, Cd = mr.shape[0], mc.shape[0]
    r, c = np.meshgrid(np.arange(Rd - 1), np.arange(Cd - 1), indexing="ij")
    a, b, d, e = r * Cd + c, r * Cd + c + 1, (r + 1) * Cd + c, (r + 1) * Cd + c + 1
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                           np.stack([e, d, b], -1).reshape(-1, 3)])
    return TemplateMesh((Rd, Cd), idx, w, dense, (dense @ off).astype(np.float32),
                        uv.astype(np.float32), tris)


def mesh_nodes(mesh: TemplateMesh, points: np.ndarray,
               frame: tuple[np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
    """Where the dense grid's nodes land on a face: ``(N, 3)`` (x, y, depth z). ``frame`` is
    :func:`face_frame` of the points, when the caller has it."""
    anchors = np.einsum("ak,akc->ac", mesh.anchor_w, points[mesh.anchor_idx])
    pos = (mesh.spline @ anchors).astype(np.float32)
    x, y, iod = frame if frame is not None else face_frame(points)
    pos[:, :2] += iod * (mesh.offsets[:, :1] * x + mesh.offsets[:, 1:2] * y)
    return pos


def slide_down(nodes: np.ndarray, shape: tuple[int, int], rows: float) -> np.ndarray:
    """Move a placed grid ``rows`` rows down its own columns (a mask pulled down keeps its size
    and shape on the fabric); past the last row the columns continue straight, a little
    shortened, as the fabric turns under the chin."""
    if rows == 0:
        return nodes
    R, C = shape
    g = nodes.reshape(R, C, -1)
    out = np.empty_like(g)
    for r in range(R):
        src = r + rows
        i = min(int(np.floor(src)), R - 2)
        f = src - i
        if src <= R - 1:
            out[r] = g[i] * (1 - f) + g[i + 1] * f
        else:
            out[r] = g[-1] + (g[-1] - g[-2]) * (src - (R - 1)) * 0.8
    return out.reshape(nodes.shape)


def bounding_box(xy: np.ndarray, size: int, margin: int = 2) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) around points, clipped to a ``size`` square."""
    xy = np.asarray(xy).reshape(-1, 2)
    lo, hi = xy.min(0), xy.max(0)  # plain floats from here: np.clip on scalars is slow
    x0 = min(max(math.floor(lo[0]) - margin, 0), size)
    y0 = min(max(math.floor(lo[1]) - margin, 0), size)
    x1 = min(max(math.ceil(hi[0]) + margin + 1, 0), size)
    y1 = min(max(math.ceil(hi[1]) + margin + 1, 0), size)
    return x0, y0, x1, y1


def triangle_maps(mesh: TemplateMesh, nodes: np.ndarray, tex_shape: tuple[int, int],
                  light: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mesh's triangles on the face and their face-to-texture affine maps.

    Returns ``(tris, coef, order)``: face-space triangles (T, 3, 2); per triangle the planes
    ``u = c0 x + c1 y + c2, v = c3 x + c4 y + c5`` (texture pixels) and ``s = c6 x + c7 y + c8``
    (the mask surface's own brightness under ``light``, a unit vector towards the light, from
    the grid's 3D normals; 1 everywhere without it) (T, 9); and the indices of the triangles to
    paint, far to near (larger z is farther in FaceMesh), without those seen from behind (the
    far side of a turned head) or degenerate.
    """
    rows, cols = mesh.shape
    nodes = np.ascontiguousarray(nodes, np.float64)
    shade = (np.ones(len(nodes)) if light is None else
             _node_shading(nodes, rows, cols, np.asarray(light, np.float64)))
    return _triangle_maps(nodes, mesh.tris, mesh.uv, float(tex_shape[1] - 1),
                          float(tex_shape[0] - 1), shade)


# The two kernels below ran as ~40 small numpy calls (~0.35 ms a mask, a sixth of rendering);
# compiled, they take a few microseconds.
@njit(cache=True, nogil=True)
def _node_shading(nodes: np.ndarray, rows: int, cols: int, light: np.ndarray) -> np.ndarray:
    """Per-node brightness of a placed grid's surface (Lambert plus ambient, relative to its
    mean): the nose ridge and cheeks catch the light, the sides turn away. Normals are the cross
    product of the grid's tangents (central differences, one-sided at the edges), turned
    towards the camera (negative z)."""
    out = np.empty(rows * cols)
    du = np.empty(3)
    dv = np.empty(3)
    for r in range(rows):
        r0, r1 = max(r - 1, 0), min(r + 1, rows - 1)
        for c in range(cols):
            c0, c1 = max(c - 1, 0), min(c + 1, cols - 1)
            for k in range(3):
                du[k] = ((nodes[r * cols + c1, k] - nodes[r * cols + c0, k]) / (c1 - c0)
                         if c1 > c0 else 0.0)
                dv[k] = ((nodes[r1 * cols + c, k] - nodes[r0 * cols + c, k]) / (r1 - r0)
                         if r1 > r0 else 0.0)
            nx = du[1] * dv[2] - du[2] * dv[1]
            ny = du[2] * dv[0] - du[0] * dv[2]
            nz = du[0] * dv[1] - du[1] * dv[0]
            norm = math.sqrt(nx * nx + ny * ny + nz * nz) + 1e-9
            if nz > 0:
                norm = -norm
            lam = (nx * light[0] + ny * light[1] + nz * light[2]) / norm
            out[r * cols + c] = 0.55 + 0.45 * min(max(lam, 0.0), 1.0)
    return out / max(out.mean(), 1e-6)


@njit(cache=True, nogil=True)
def _triangle_maps(nodes: np.ndarray, tris: np.ndarray, uv: np.ndarray, u_scale: float,
                   v_scale: float, shade: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t_count = tris.shape[0]
    face = np.empty((t_count, 3, 2))
    coef = np.zeros((t_count, 9))
    keep = np.zeros(t_count, np.bool_)
    depth = np.empty(t_count)
    tex = np.empty((3, 3))
    for t in range(t_count):
        for j in range(3):
            n = tris[t, j]
            face[t, j, 0] = nodes[n, 0]
            face[t, j, 1] = nodes[n, 1]
            tex[j, 0] = uv[n, 0] * u_scale
            tex[j, 1] = uv[n, 1] * v_scale
            tex[j, 2] = shade[n]
        depth[t] = -(nodes[tris[t, 0], 2] + nodes[tris[t, 1], 2] + nodes[tris[t, 2], 2]) / 3.0
        # Affine per triangle: tex = tex0 + J (p - face0), J = dT inv(dF).
        f1x, f1y = face[t, 1, 0] - face[t, 0, 0], face[t, 1, 1] - face[t, 0, 1]
        f2x, f2y = face[t, 2, 0] - face[t, 0, 0], face[t, 2, 1] - face[t, 0, 1]
        det_f = f1x * f2y - f2x * f1y
        det_t = ((tex[1, 0] - tex[0, 0]) * (tex[2, 1] - tex[0, 1])
                 - (tex[2, 0] - tex[0, 0]) * (tex[1, 1] - tex[0, 1]))
        if not (np.sign(det_f) == np.sign(det_t) and abs(det_f) > 2e-3):
            continue
        keep[t] = True
        i00, i01, i10, i11 = f2y / det_f, -f2x / det_f, -f1y / det_f, f1x / det_f
        for k in range(3):
            d1 = tex[1, k] - tex[0, k]
            d2 = tex[2, k] - tex[0, k]
            jx = d1 * i00 + d2 * i10
            jy = d1 * i01 + d2 * i11
            coef[t, 3 * k] = jx
            coef[t, 3 * k + 1] = jy
            coef[t, 3 * k + 2] = tex[0, k] - (jx * face[t, 0, 0] + jy * face[t, 0, 1])
    order = np.argsort(depth, kind="mergesort")  # stable: ties keep the grid's order
    return face, coef, order[keep[order]].astype(np.int64)
