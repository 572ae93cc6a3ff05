"""Which crop a face is aligned to: the generator's own layout, or a recognition template.

``default`` is :mod:`.align`'s layout: eye centres and mouth centre at fixed fractions of a
``--size`` square, loose enough to hold the whole lower face, where masks go. ``arcfaceN`` is
the five-point template that face-recognition models (ArcFace and the models trained on its
crops) are trained on: eye centres, nose tip and mouth corners at fixed pixels of a 112x112
crop, scaled to N the way insightface's ``estimate_norm`` scales it (see
:func:`arcface_template`). Both are similarities fitted to the same FaceMesh landmarks, so a
mask is rendered on either geometry from the same face.
"""

from __future__ import annotations

import re

import numpy as np

from .facepoints import LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE

DEFAULT_CROP = "default"

# The published 112x112 template (insightface's ``arcface_dst``/``arcface_src``): left eye,
# right eye, nose tip, left and right mouth corner, image left first, in pixels.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)

_ARCFACE = re.compile(r"^arcface(\d+)$")


def arcface_template(size: int) -> np.ndarray:
    """The five template points for a ``size`` crop, ``(5, 2)`` pixels.

    insightface's rule: a multiple of 112 scales the 112 template by size/112; otherwise (a
    multiple of 128) the template is first put in a 128 square by shifting it 8 px right (the
    112 crop centred in 128 px, as the 128 px recognition crops are made), then scaled by
    size/128."""
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112)
    if size % 128 == 0:
        ratio = size / 128
        return (ARCFACE_112 + (8.0, 0.0)) * ratio
    raise ValueError(f"arcface crops are 112 or 128 px or multiples of them, not {size}")


def parse_crop(name: str) -> int | None:
    """The side of crop ``name`` (``arcface112`` -> 112), or None for ``default`` (whose side is
    ``--size``). Raises ValueError for an unknown name or size."""
    if name == DEFAULT_CROP:
        return None
    m = _ARCFACE.match(name)
    if not m:
        raise ValueError(f"--crop {name!r}: 'default' or 'arcfaceN' (arcface112, arcface128, "
                         "arcface224, arcface256, ...)")
    size = int(m.group(1))
    if not 64 <= size <= 2048:
        raise ValueError(f"--crop {name}: the side must be between 64 and 2048")
    arcface_template(size)  # a side the template is published for
    return size


def crop_side(name: str, size: int) -> int:
    """The side of the crop ``name`` makes: its own for a template, ``size`` for default."""
    side = parse_crop(name)
    return size if side is None else side


def five_points(points: np.ndarray) -> np.ndarray:
    """The recognition template's five points from 478 FaceMesh landmarks, ``(5, 2)``: each eye
    centre as the mean of its eight contour points (steadier than the iris centre, which follows
    the gaze), the nose tip and the two mouth corners, image left first."""
    p = np.asarray(points, np.float64)[:, :2]
    return np.stack([p[list(LEFT_EYE)].mean(0), p[list(RIGHT_EYE)].mean(0), p[NOSE_TIP],
                     p[MOUTH[0]], p[MOUTH[1]]])


def crop_matrix(points: np.ndarray, name: str, size: int) -> np.ndarray:
    """The 2x3 image-to-crop similarity for crop ``name`` (``size`` is the default crop's
    side), fitted to the face's landmarks ``points``."""
    # align (OpenCV) is imported here: generate's parent process parses crop names only.
    from .align import alignment_matrix, similarity_from_points

    side = parse_crop(name)
    if side is None:
        return alignment_matrix(points, size)
    return similarity_from_points(five_points(points), arcface_template(side))


def template_residual(points: np.ndarray, name: str, size: int) -> np.ndarray:
    """How far (px, in the crop) each of the five points lands from the template after the
    fit: ``(5,)``. Defined for arcface crops only."""
    from .align import transform_points

    side = parse_crop(name)
    if side is None:
        raise ValueError("the default crop has no five-point template")
    m = crop_matrix(points, name, size)
    warped = transform_points(five_points(points), m)
    return np.linalg.norm(warped - arcface_template(side), axis=1)
