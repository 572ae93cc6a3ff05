"""Piecewise-affine warp of a template's texture onto a face, over a grid of triangles.

Each grid cell of a template is split into two triangles; each triangle gets its own affine map
from face pixels back to texture pixels, so the texture bends along the landmark mesh (a single
homography, the usual baseline, cannot follow a jaw or a turned head). Triangles are painted far
to near, and triangles seen from behind are dropped, so the near side of a turned face hides the
far side as it should.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .landmarks import LEFT_EYE, RIGHT_EYE
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
    weights: np.ndarray  # (N, 478): node = weights @ landmarks
    offsets: np.ndarray  # (N, 2) in face units (eye-line, down)
    uv: np.ndarray  # (N, 2) texture coordinates in [0, 1]
    tris: np.ndarray  # (T, 3) node indices


@lru_cache(maxsize=64)
def template_mesh(t: Template, factor: tuple[int, int] = (1, 2)) -> TemplateMesh:
    """Refine a template's anchor grid by ``factor`` (rows, columns) with Catmull-Rom splines.
    Anchors are linear in the landmarks and the spline is linear in the anchors, so the dense
    grid is one matrix applied to the landmarks."""
    R, C = t.shape
    flat = [a for row in t.anchors for a in row]
    w = np.zeros((R * C, 478))
    off = np.zeros((R * C, 2))
    for k, a in enumerate(flat):
        for i, x in zip(a.indices, a.weights, strict=True):
            w[k, i] += x
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
    return TemplateMesh((Rd, Cd), (dense @ w).astype(np.float32),
                        (dense @ off).astype(np.float32), uv.astype(np.float32), tris)


def mesh_nodes(mesh: TemplateMesh, points: np.ndarray,
               frame: tuple[np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
    """Where the dense grid's nodes land on a face: ``(N, 3)`` (x, y, depth z). ``frame`` is
    :func:`face_frame` of the points, when the caller has it."""
    pos = mesh.weights @ points.astype(np.float32)
    x, y, iod = frame if frame is not None else face_frame(points)
    pos[:, :2] += iod * (mesh.offsets[:, :1] * x + mesh.offsets[:, 1:2] * y)
    return pos


# How far each wear style slides the mask down the face, in template rows: "nose-exposed" puts
# the top edge under the nose, "under-chin" under the lower lip (templates share a row layout:
# top edge, nose, mouth, chin).
WEAR_SHIFT = {"proper": 0.0, "nose-exposed": 1.3, "under-chin": 2.4}


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


def node_normals(nodes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Unit surface normals (N, 3) of a placed grid, from its 3D nodes (z from FaceMesh),
    oriented towards the camera (negative z)."""
    g = nodes.reshape(*shape, 3).astype(np.float64)
    du = np.gradient(g, axis=1)
    dv = np.gradient(g, axis=0) if shape[0] > 1 else np.zeros_like(g)
    n = np.cross(du, dv)
    n *= np.where(n[..., 2:3] > 0, -1.0, 1.0)
    n /= np.linalg.norm(n, axis=2, keepdims=True) + 1e-9
    return n.reshape(-1, 3)


def bounding_box(xy: np.ndarray, size: int, margin: int = 2) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) around points, clipped to a ``size`` square."""
    xy = np.asarray(xy).reshape(-1, 2)
    x0 = int(np.clip(np.floor(xy[:, 0].min()) - margin, 0, size))
    y0 = int(np.clip(np.floor(xy[:, 1].min()) - margin, 0, size))
    x1 = int(np.clip(np.ceil(xy[:, 0].max()) + margin + 1, 0, size))
    y1 = int(np.clip(np.ceil(xy[:, 1].max()) + margin + 1, 0, size))
    return x0, y0, x1, y1


def triangle_maps(mesh: TemplateMesh, nodes: np.ndarray, tex_shape: tuple[int, int],
                  node_shade: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mesh's triangles on the face and their face-to-texture affine maps.

    Returns ``(tris, coef, order)``: face-space triangles (T, 3, 2); per triangle the planes
    ``u = c0 x + c1 y + c2, v = c3 x + c4 y + c5`` (texture pixels) and ``s = c6 x + c7 y + c8``
    (``node_shade`` interpolated across the triangle, 1 without it) (T, 9); and the indices of
    the triangles to paint, far to near (larger z is farther in FaceMesh), without those seen
    from behind (the far side of a turned head) or degenerate.
    """
    th, tw = tex_shape
    F = nodes[:, :2].astype(np.float64)[mesh.tris]  # (T, 3, 2) face
    shade = np.ones(len(nodes)) if node_shade is None else node_shade
    Tx = np.concatenate([mesh.uv * [tw - 1, th - 1], shade[:, None]], 1)[mesh.tris]  # (T, 3, 3)
    # Affine per triangle: tex = Tx0 + J (p - F0), J = dT @ inv(dF), with 2x2 inverses by hand.
    dF1, dF2 = F[:, 1] - F[:, 0], F[:, 2] - F[:, 0]
    det_f = dF1[:, 0] * dF2[:, 1] - dF2[:, 0] * dF1[:, 1]
    dT1, dT2 = Tx[:, 1] - Tx[:, 0], Tx[:, 2] - Tx[:, 0]
    det_t = dT1[:, 0] * dT2[:, 1] - dT2[:, 0] * dT1[:, 1]
    keep = (np.sign(det_f) == np.sign(det_t)) & (np.abs(det_f) > 2e-3)
    safe = np.where(keep, det_f, 1.0)
    inv = np.stack([np.stack([dF2[:, 1], -dF2[:, 0]], -1),
                    np.stack([-dF1[:, 1], dF1[:, 0]], -1)], 1) / safe[:, None, None]
    J = np.stack([dT1, dT2], -1) @ inv  # (T, 3, 2)
    c = Tx[:, 0] - np.einsum("tij,tj->ti", J, F[:, 0])
    coef = np.concatenate([J[:, 0], c[:, :1], J[:, 1], c[:, 1:2], J[:, 2], c[:, 2:]], 1)
    z = nodes[:, 2][mesh.tris].mean(1)
    order = np.argsort(-z, kind="stable")
    return F, coef, order[keep[order]].astype(np.int64)
