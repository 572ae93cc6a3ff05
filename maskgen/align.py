"""Alignment: a similarity transform that puts the eyes and mouth at fixed places in a square.

The canonical layout keeps the whole lower face (chin included) inside the crop, since that is
where masks go. The transform is stored in each sample's metadata, so a restored crop can be
warped back into the original photo.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .facepoints import CHIN, LOWER_LIP, anchor_points

# Left eye, right eye, mouth centre as fractions of the crop side.
CANONICAL = np.array([[0.375, 0.400], [0.625, 0.400], [0.500, 0.670]], np.float64)


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to
    ``dst`` (both ``(N, 2)``), as a 2x3 matrix (Umeyama, no reflection)."""
    # For 2D similarities the optimum has a closed form: in complex numbers d = a * s + b, with
    # a = <s, d> / <s, s> over the centred points. In plain floats: alignment fits 3 points
    # a face, where numpy's small-array calls cost ~90 us and this ~10.
    s = np.asarray(src, np.float64)[:, :2].tolist()
    d = np.asarray(dst, np.float64)[:, :2].tolist()
    n = len(s)
    msx, msy = sum(p[0] for p in s) / n, sum(p[1] for p in s) / n
    mdx, mdy = sum(p[0] for p in d) / n, sum(p[1] for p in d) / n
    re = im = norm = 0.0
    for (sx, sy), (dx, dy) in zip(s, d, strict=True):
        sx, sy, dx, dy = sx - msx, sy - msy, dx - mdx, dy - mdy
        re += sx * dx + sy * dy
        im += sx * dy - sy * dx
        norm += sx * sx + sy * sy
    norm = max(norm, 1e-12)
    a, b = re / norm, im / norm
    return np.array([[a, -b, mdx - (a * msx - b * msy)], [b, a, mdy - (b * msx + a * msy)]])


def alignment_matrix(points: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 matrix taking image pixels to the canonical ``size`` x ``size`` crop."""
    return similarity_from_points(anchor_points(points), CANONICAL * size)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 similarity to ``(N, 2|3)`` points; z is scaled by the same factor."""
    out = np.empty(points.shape, np.float32)
    # x' = a x + b y + c, y' = d x + e y + f column by column: one (N, 2) @ (2, 2) product
    # and its temporaries cost ~3 times as much for 478 points.
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    (a, b, c), (d, e, f) = m.tolist()
    out[:, 0] = a * x + b * y + c
    out[:, 1] = d * x + e * y + f
    if points.shape[1] == 3:
        out[:, 2] = points[:, 2] * math.sqrt(abs(a * e - b * d))
    return out


# What lies beyond the photo in a crop with ``border="grey"``: one flat value, which a model
# reads as "no photo here" (a mirrored face there hides the mask from it).
OUTSIDE_GREY = 128


def align_face(rgb: np.ndarray, points: np.ndarray, size: int = 256,
               matrix: np.ndarray | None = None, border: str = "reflect"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the face to ``size`` x ``size``, by ``matrix`` (image to crop) or, without one, by
    the canonical layout (:func:`alignment_matrix`).

    Returns the crop, the 2x3 image-to-crop matrix and the landmarks in crop coordinates.
    Where the crop reaches beyond the photo, ``border`` says what fills it: ``"reflect"``
    mirrors the photo at its edge; ``"smear"`` continues the edge's pixels outwards, blurred
    (:func:`smear_outside`; the generator's: a mirror shows a second, upside-down half of the
    face beyond the edge, which no real photo has); ``"grey"`` is flat grey (what ``unmask``
    gives the model: on tight photos the reflections make kaleidoscopes of the face that hide
    the mask).
    """
    m = alignment_matrix(points, size) if matrix is None else matrix
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
    if border in ("reflect", "smear"):
        crop = cv2.warpAffine(src, m_src, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
        if border == "smear":
            crop = smear_outside(src, m_src, crop)
    elif border == "grey":
        crop = cv2.warpAffine(src, m_src, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(OUTSIDE_GREY,) * 3)
    else:
        raise ValueError(f"border must be 'reflect', 'smear' or 'grey', got {border!r}")
    return crop, m, transform_points(points, m)


# Blur of the smeared border, per crop side: enough to turn the edge's streaks (hair, collars)
# into soft bands, while the colours next to the edge stay the photo's.
SMEAR_SIGMA = 1 / 48


def smear_outside(src: np.ndarray, m: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """``crop`` (the warp of ``src`` by ``m``) with the pixels that lie beyond ``src``'s edges
    filled from its edge pixels, continued outwards and blurred, instead of mirrored. Pixels
    whose bilinear footprint lies within ``src`` keep their values exactly (a crop within the
    photo is returned as it is); pixels on the edge blend the two by how much of them is in."""
    h, w = src.shape[:2]
    size = crop.shape[1], crop.shape[0]
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size[0] - 1, 0, 1], [0, size[1] - 1, 1],
                        [size[0] - 1, size[1] - 1, 1]], np.float64) @ inv.T
    # A margin of a pixel: fixed-point rounding inside the warp must not reach a border pixel.
    if (corners.min(0) >= 1).all() and (corners.max(0) <= (w - 2, h - 2)).all():
        return crop
    inside = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if inside.min() == 255:
        return crop
    smear = cv2.warpAffine(src, m, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    # The blur at a quarter of the side: a wide kernel at full size costs more than the rest.
    small = cv2.resize(smear, (max(1, size[0] // 4), max(1, size[1] // 4)),
                       interpolation=cv2.INTER_AREA)
    soft = cv2.resize(cv2.GaussianBlur(small, (0, 0), SMEAR_SIGMA * max(size) / 4), size,
                      interpolation=cv2.INTER_LINEAR)
    edge = inside < 255
    a = inside[edge].astype(np.float32)[:, None] * np.float32(1 / 255)
    out = crop.copy()
    out[edge] = np.round(smear[edge] * a + soft[edge] * (1 - a)).astype(np.uint8)
    return out


def crop_footprint(shape: tuple[int, ...], m: np.ndarray, side: int
                   ) -> tuple[int, int, int, int]:
    """The photo box (x0, y0, x1, y1; ends exclusive, clipped to the photo) that a ``side``-px
    crop aligned by ``m`` covers, with a pixel to spare for interpolation: the only pixels
    :func:`paste_back` can change."""
    h, w = shape[:2]
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64) \
        @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (w, h))
    return int(x0), int(y0), int(x1), int(y1)


def paste_back(photo: np.ndarray, crop: np.ndarray, m: np.ndarray, weight: np.ndarray
               ) -> np.ndarray:
    """Blend an aligned ``crop`` back into the ``photo`` it was cut from (the inverse of
    :func:`align_face`): ``weight`` (crop-sized floats in [0, 1]) says how much of the crop
    each pixel takes. Only photo pixels under the crop's footprint are touched, and those where
    the warped weight is 0 keep their exact values; parts of the crop that lay outside the
    photo (reflected border) go nowhere."""
    x0, y0, x1, y1 = crop_footprint(photo.shape, m, crop.shape[0])
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    sub = cv2.invertAffineTransform(m)
    sub[:, 2] -= (x0, y0)
    size = (int(x1 - x0), int(y1 - y0))
    back = cv2.warpAffine(crop, sub, size, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    wb = cv2.warpAffine(weight.astype(np.float32), sub, size, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    wb = np.clip(wb, 0, 1)
    if out.ndim == 3:  # OpenCV returns one-channel images as 2-D
        wb = wb[..., None]
        back = back.reshape(back.shape[:2] + (-1,))
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(wb * back + (1 - wb) * region), 0, 255).astype(np.uint8)
    return out


def grey_below(img: np.ndarray, row: int) -> np.ndarray:
    """``img`` as ``unmask`` would show a photo that ended at ``row``: the rows from there down
    flat :data:`OUTSIDE_GREY` (``align_face(..., border="grey")``), or 0 in a binary mask
    (2-D): nothing below the photo is a mask."""
    if row >= img.shape[0]:
        return img
    out = img.copy()
    out[row:] = 0 if img.ndim == 2 else OUTSIDE_GREY
    return out


def frame_cut_row(points: np.ndarray, u: float) -> int:
    """The crop row where a photo's bottom edge would be, a fraction ``u`` of the way from the
    lower lip (0) to the chin (1); ``points`` are crop landmarks."""
    lip, chin = float(points[LOWER_LIP, 1]), float(points[CHIN, 1])
    return int(round(lip + u * (chin - lip)))
