"""Alignment: a similarity transform that puts the eyes and mouth at fixed places in a square.

The canonical layout keeps the whole lower face (chin included) inside the crop, since that is
where masks go. The transform is stored in each sample's metadata, so a restored crop can be
warped back into the original photo.
"""

from __future__ import annotations

import cv2
import numpy as np

from .landmarks import anchor_points

# Left eye, right eye, mouth centre as fractions of the crop side.
CANONICAL = np.array([[0.375, 0.400], [0.625, 0.400], [0.500, 0.670]], np.float64)


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to
    ``dst`` (both ``(N, 2)``), as a 2x3 matrix (Umeyama, no reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    # For 2D similarities the optimum has a closed form in complex numbers: d = a * s + b.
    zs = s0[:, 0] + 1j * s0[:, 1]
    zd = d0[:, 0] + 1j * d0[:, 1]
    a = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)
    m = np.array([[a.real, -a.imag, 0.0], [a.imag, a.real, 0.0]])
    m[:, 2] = md - m[:, :2] @ ms
    return m


def alignment_matrix(points: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 matrix taking image pixels to the canonical ``size`` x ``size`` crop."""
    return similarity_from_points(anchor_points(points), CANONICAL * size)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 similarity to ``(N, 2|3)`` points; z is scaled by the same factor."""
    out = np.array(points, np.float32, copy=True)
    out[:, :2] = points[:, :2] @ m[:, :2].T + m[:, 2]
    if points.shape[1] == 3:
        out[:, 2] = points[:, 2] * float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    return out


def align_face(rgb: np.ndarray, points: np.ndarray, size: int = 256
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the face to ``size`` x ``size``.

    Returns the crop (borders filled by reflection), the 2x3 image-to-crop matrix and the
    landmarks in crop coordinates.
    """
    m = alignment_matrix(points, size)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src = rgb
    pre = 1.0
    if scale < 0.5:
        # Shrinking a lot in one bilinear warp aliases; shrink most of the way with INTER_AREA.
        pre = scale * 1.5
        dsize = (max(1, round(rgb.shape[1] * pre)), max(1, round(rgb.shape[0] * pre)))
        src = cv2.resize(rgb, dsize, interpolation=cv2.INTER_AREA)
    m_src = m.copy()
    if pre != 1.0:
        # Express m in the shrunk picture's pixels, with cv2.resize's exact per-axis factors
        # and its pixel-centre convention (x_src = (x_small + 0.5) / s - 0.5).
        sx, sy = src.shape[1] / rgb.shape[1], src.shape[0] / rgb.shape[0]
        m_src[:, 0] = m[:, 0] / sx
        m_src[:, 1] = m[:, 1] / sy
        m_src[:, 2] = m[:, 2] + m[:, 0] * (0.5 / sx - 0.5) + m[:, 1] * (0.5 / sy - 0.5)
    crop = cv2.warpAffine(src, m_src, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    return crop, m, transform_points(points, m)
