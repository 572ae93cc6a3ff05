"""Hair over the cheeks: strands that hang from the temples across the lower face, found from
colour alone on the aligned crop and its landmarks.

A real mask is worn under hair that falls across the cheeks, so the pair must show the hair in
front of the mask (:mod:`.occlusion` puts it there). Nothing here runs a network: the face's
own skin (inner cheeks and nose, below the eyes) and its own hair (above the forehead, outside
the face outline) each get a colour model, and a pixel of the lower face counts as hair when it
is far from the skin, close to the hair, and joined to hair outside the outline that hangs from
above the mouth. The rules are conservative, since a mask drawn over real hair is a smaller
fault than hair pasted over a mask: a face with a beard, moustache or dark stubble (its chin or
upper lip not skin) gets no hair at all, nor does a photo without colour, a face whose hair is
the skin's colour (fair hair on fair skin) or a face with no hair above the forehead (bald, a
hat, a crop that cuts the head).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .facepoints import CHIN, FACE_OVAL, LEFT_EYE, LOWER_LIP, MOUTH, NOSE_TIP, RIGHT_EYE
from .warp import face_frame

# The brows (MediaPipe's mesh points), image left and right.
LEFT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
RIGHT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
# The lower eyelids' middles (image left and right): where the cheeks begin.
LOWER_LIDS = [145, 374]
# Colour models live in CIELAB (8 bit); distances are Mahalanobis distances to each model.
# A pixel is hair when it is further than SKIN_FAR from the skin and within HAIR_NEAR of the
# hair, and nearer the hair than the skin by HAIR_MARGIN.
SKIN_FAR = 6.0
HAIR_NEAR = 3.0
HAIR_MARGIN = 2.0
# A model's covariance gets this floor on its diagonal (levels squared): a flat patch of skin
# would otherwise call every pixel of another shade "far".
COV_FLOOR = 9.0
# The hair model needs this share of its sample region to be unlike skin, and its centre this
# far from the skin model's (and the skin's from the hair's); else the face has no usable hair.
HAIR_SAMPLE_SHARE = 0.5
MODELS_APART = 8.0
# Beard guard: the share of not-skin pixels on the chin or upper lip above which a face may
# have a beard, moustache or stubble, and no hair is looked for.
BEARD_SHARE = 0.2
# A photo whose chroma hardly varies (greyscale, sepia) cannot tell hair from skin.
MIN_CHROMA_STD = 2.0
# Sizes in inter-ocular distances: how far outside the outline hair is looked for, how deep a
# pixel must lie inside the outline to count (the outline itself is a few pixels off on many
# faces, and the background beside it is not skin either), and the least hair inside the lower
# face, as an area, for the face to get a hair occluder.
OUTSIDE_BAND = 0.45
MIN_DEPTH = 0.08
MIN_AREA = 0.06
# Soft edge of the cover: a Gaussian's sigma, in pixels.
EDGE_SIGMA = 0.7


@dataclass(frozen=True)
class Hair:
    """Hair found over a face's cheeks: ``cover``, how much of each crop pixel it covers
    ((S, S) float32 in [0, 1]; the strands over the lower face and the hair beside the face
    they hang from), and ``separation``, how far apart the skin and hair colour models are
    (the lesser Mahalanobis distance of either centre to the other model; larger is surer)."""

    cover: np.ndarray
    separation: float


def find_hair(crop: np.ndarray, points: np.ndarray) -> Hair | None:
    """The hair in front of the lower face of the aligned ``crop`` (RGB uint8) whose 478
    landmarks (crop pixels) are ``points``; None where the face has none that can be told
    reliably (see the module's docstring)."""
    size = crop.shape[0]
    sample = cv2.cvtColor(np.ascontiguousarray(crop[::4, ::4]), cv2.COLOR_RGB2LAB)
    if float(sample[..., 1:].reshape(-1, 2).astype(np.float32).std(0).max()) < MIN_CHROMA_STD:
        return None
    iod = face_frame(points)[2]
    depth = _depth(_fill(points[list(FACE_OVAL), :2], size))
    # Every region read below lies within the band around the outline: only it is converted
    # to Lab (the conversion is per pixel, so the values are the whole crop's).
    looked = depth > -OUTSIDE_BAND * iod
    lab = np.zeros(crop.shape, np.float32)
    ys, xs = np.flatnonzero(looked.any(1)), np.flatnonzero(looked.any(0))
    if not len(ys):
        return None
    box = slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)
    lab[box] = cv2.cvtColor(np.ascontiguousarray(crop[box]), cv2.COLOR_RGB2LAB)
    skin = _model(lab[_skin_region(points, depth, iod, points[list(MOUTH), 1].mean())])
    if skin is None:
        return None
    # The hair model first, from the band above the forehead alone: most faces (seven in ten)
    # stop here, before the beard guard's model and distances.
    crown = lab[_crown_region(points, depth, iod)]
    if len(crown) == 0:
        return None
    crown_far = _distance(crown, skin) > SKIN_FAR
    if crown_far.mean() < HAIR_SAMPLE_SHARE:
        return None
    hair = _model(crown[crown_far])
    if hair is None:
        return None
    separation = min(float(_distance(hair[0][None], skin)[0]),
                     float(_distance(skin[0][None], hair)[0]))
    if separation < MODELS_APART:
        return None
    # The beard guard reads the chin and upper lip against the upper face's skin alone: a
    # model that saw the lower cheeks would have learnt the beard as skin.
    upper = _model(lab[_skin_region(points, depth, iod, points[NOSE_TIP, 1])])
    if upper is None:
        return None
    not_skin = np.zeros(depth.shape, bool)
    rows = slice(int(points[2, 1]), int(points[CHIN, 1]) + 1)  # nose base to chin
    not_skin[rows] = _distance(lab[rows], upper) > SKIN_FAR
    if _beard_share(points, not_skin, iod) > BEARD_SHARE:
        return None
    # Distances only where hair is looked for (the rest stays "far from both").
    looked[:_top_row(points, iod)] = False
    d_skin = np.full(depth.shape, np.inf, np.float32)
    d_skin[looked] = _distance(lab[looked], skin)
    not_skin = d_skin > SKIN_FAR
    d_hair = np.full(depth.shape, np.inf, np.float32)
    d_hair[looked & not_skin] = _distance(lab[looked & not_skin], hair)
    is_hair = not_skin & (d_hair < HAIR_NEAR) & (d_hair + HAIR_MARGIN < d_skin)
    cover = _hanging_hair(is_hair, points, depth, iod)
    return None if cover is None else Hair(cover, round(separation, 1))


def _hanging_hair(is_hair: np.ndarray, points: np.ndarray, depth: np.ndarray, iod: float
                  ) -> np.ndarray | None:
    """The cover of the hair pixels joined to hair beside the face above the mouth that reach
    into the lower face's sides, or None when they cover too little of it."""
    band = depth > -OUTSIDE_BAND * iod
    mouth_y = float(points[list(MOUTH), 1].mean())
    nose_y = float(points[NOSE_TIP, 1])
    eyes_y = float(points[LOWER_LIDS, 1].max())
    top = _top_row(points, iod)
    area = np.zeros(is_hair.shape, bool)
    area[top:] = band[top:]
    candidates = (is_hair & area & ~_eyes(points, is_hair.shape[0], iod)).astype(np.uint8)
    candidates = cv2.morphologyEx(candidates, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(candidates, connectivity=8)
    if n <= 1:
        return None
    inside = depth > 0
    deep = depth > MIN_DEPTH * iod
    lower = np.zeros_like(deep)
    lower[int(nose_y - 0.3 * iod):] = True
    deep_lower = deep & lower
    hanging = np.zeros_like(deep)
    hanging[top:int(mouth_y)] = True
    hanging &= ~inside
    # A strand enters the face above the mask, beside the eyes and cheekbones; a shadow along
    # the jaw does not reach up there.
    upper = np.zeros_like(deep)
    upper[int(eyes_y + 0.2 * iod):int(nose_y - 0.1 * iod)] = True
    keep = np.zeros(n, bool)
    counts_in = np.bincount(labels[deep_lower], minlength=n)
    from_above = np.bincount(labels[hanging], minlength=n)
    entering = np.bincount(labels[deep & upper], minlength=n)
    # Hair hangs beside the mouth, from one side; what runs under it from one mouth corner to
    # the other, inside the outline or just below it, is a shadow on or under the jaw, or a
    # beard.
    under = np.zeros_like(deep)
    x0, x1 = int(points[MOUTH[0], 0]), int(points[MOUTH[1], 0]) + 1
    under[int(mouth_y):, min(x0, x1 - 1):max(x1, x0 + 1)] = True
    under &= depth > -0.12 * iod
    cx = (x0 + x1) // 2
    left, right = under.copy(), under
    left[:, cx:] = False
    right[:, :cx] = False
    across = ((np.bincount(labels[left], minlength=n) > 0)
              & (np.bincount(labels[right], minlength=n) > 0))
    min_px = MIN_AREA * iod * iod
    keep[1:] = ((counts_in[1:] >= min_px) & (from_above[1:] >= min_px)
                & (entering[1:] >= 0.3 * min_px) & ~across[1:])
    if not keep.any():
        return None
    solid = keep[labels].astype(np.uint8)
    solid = cv2.morphologyEx(solid, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    cover = cv2.GaussianBlur(solid.astype(np.float32), (0, 0), EDGE_SIGMA)
    # As the hands' cover: faint tails and the near-1 plateau snapped to 0 and 1.
    return np.clip((cover - 0.01) * (1 / 0.98), 0.0, 1.0).astype(np.float32)


def _top_row(points: np.ndarray, iod: float) -> int:
    """The first crop row where hair over the cheeks is looked for: a little above the eyes'
    lower lids (the strands enter the face beside the eyes)."""
    return int(max(0, float(points[LOWER_LIDS, 1].max()) - 0.3 * iod))


def _model(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, inverse covariance) of Lab ``samples`` (N, 3), fitted to their central 80 % (a
    glasses' rim, a freckle or a stray strand in the sample barely moves it); None for fewer
    than 30 samples."""
    if len(samples) < 30:
        return None
    med = np.median(samples, 0)
    d = np.abs(samples - med).sum(1)
    core = samples[d <= np.percentile(d, 80)]
    mean = core.mean(0)
    cov = np.cov(core.T) + np.eye(3) * COV_FLOOR
    # The inverse by cofactors: LAPACK's, on a VM whose cores are all busy, took milliseconds.
    c = np.array([[cov[1, 1] * cov[2, 2] - cov[1, 2] * cov[2, 1],
                   cov[0, 2] * cov[2, 1] - cov[0, 1] * cov[2, 2],
                   cov[0, 1] * cov[1, 2] - cov[0, 2] * cov[1, 1]],
                  [cov[1, 2] * cov[2, 0] - cov[1, 0] * cov[2, 2],
                   cov[0, 0] * cov[2, 2] - cov[0, 2] * cov[2, 0],
                   cov[0, 2] * cov[1, 0] - cov[0, 0] * cov[1, 2]],
                  [cov[1, 0] * cov[2, 1] - cov[1, 1] * cov[2, 0],
                   cov[0, 1] * cov[2, 0] - cov[0, 0] * cov[2, 1],
                   cov[0, 0] * cov[1, 1] - cov[0, 1] * cov[1, 0]]])
    return mean.astype(np.float32), (c / (cov[0] @ c[:, 0])).astype(np.float32)


def _distance(lab: np.ndarray, model: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Mahalanobis distance of each Lab pixel (any shape (..., 3)) to ``model``."""
    mean, icov = model
    d = lab - mean
    d0, d1, d2 = d[..., 0], d[..., 1], d[..., 2]
    # The quadratic form term by term: a (H, W, 3) @ (3, 3) product goes through BLAS threads.
    q = (d0 * (icov[0, 0] * d0 + 2 * icov[0, 1] * d1 + 2 * icov[0, 2] * d2)
         + d1 * (icov[1, 1] * d1 + 2 * icov[1, 2] * d2) + icov[2, 2] * d2 * d2)
    return np.sqrt(np.maximum(q, 0.0))


def _skin_region(points: np.ndarray, depth: np.ndarray, iod: float, bottom: float
                 ) -> np.ndarray:
    """bool (S, S): the face's surest skin, the inner cheeks and nose from below the lower
    eyelids down to row ``bottom`` (the nose tip, or the mouth: the lower cheeks bring the
    face's shading into the model), well inside the outline (hair at the sides stays out)."""
    size = depth.shape[0]
    eyes_y = float(points[LOWER_LIDS, 1].max())
    region = np.zeros((size, size), bool)
    region[int(eyes_y + 0.15 * iod):int(bottom)] = True
    return region & (depth > 0.3 * iod)


def _crown_region(points: np.ndarray, depth: np.ndarray, iod: float) -> np.ndarray:
    """bool (S, S): where the hair should be, a band just above the forehead's outline."""
    ring = (depth > -0.35 * iod) & (depth <= -0.05 * iod)
    brow_y = float(points[[10, 109, 338], 1].max())
    ring[int(max(0, brow_y + 0.2 * iod)):] = False
    return ring


def _beard_share(points: np.ndarray, not_skin: np.ndarray, iod: float) -> float:
    """The larger share of not-skin pixels on the chin (below the lower lip) and on the upper
    lip (between the nose and the mouth), away from the lips themselves."""
    size = not_skin.shape[0]
    cx = float(points[list(MOUTH), 0].mean())
    half = 0.3 * iod
    x0, x1 = int(max(0, cx - half)), int(min(size, cx + half))
    lip_y = float(points[LOWER_LIP, 1])
    chin_y = float(points[CHIN, 1])
    chin = not_skin[int(lip_y + 0.1 * iod):int(chin_y - 0.1 * iod), x0:x1]
    nose_y = float(points[2, 1])
    upper_y = float(points[0, 1])
    upper = not_skin[int(nose_y + 0.05 * iod):int(upper_y - 0.05 * iod), x0:x1]
    shares = [float(a.mean()) for a in (chin, upper) if a.size]
    return max(shares, default=1.0)


def _eyes(points: np.ndarray, size: int, iod: float) -> np.ndarray:
    """bool (S, S): the eyes and brows with a margin: dark lashes, make-up and glasses' rims
    there are no hair over the cheeks."""
    out = np.zeros((size, size), np.uint8)
    for group in (LEFT_EYE + LEFT_BROW, RIGHT_EYE + RIGHT_BROW):
        hull = cv2.convexHull(points[list(group), :2].astype(np.float32))[:, 0]
        cv2.fillConvexPoly(out, np.round(hull * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    return cv2.distanceTransform(1 - out, cv2.DIST_L2, 5) <= 0.2 * iod


def _depth(inside: np.ndarray) -> np.ndarray:
    """float32 (S, S): each pixel's distance into the region ``inside`` (uint8 0/1), negative
    outside it: one pass grows or shrinks the region by any radius (large elliptic kernels
    cost milliseconds each)."""
    return (cv2.distanceTransform(inside, cv2.DIST_L2, 5)
            - cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5))


def _fill(poly: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return out
