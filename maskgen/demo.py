"""The built-in ``demo`` source: real faces that installed packages ship, so all runs offline.

scikit-image ships two real photographs with faces (``astronaut``: Eileen Collins, 512x512 colour;
``camera``: the cameraman, 512x512 grayscale) and 100 tiny 25x25 grayscale LFW face crops
(``lfw_subset``). That is all the real face data a pip install brings, so the demo makes a few
varied samples from it: mirror images, in-plane rotations, tight and off-centre crops, lighting
changes and some upscaled LFW faces. They are honest variants of a handful of people, good for
trying the tool, not a dataset.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

_LFW_FACES = 12  # the first 100 entries of lfw_subset are faces, the rest are not


def _variants() -> dict[str, tuple[str, str]]:
    """demo name -> (base picture, variant recipe)."""
    v = {
        "astronaut": ("astronaut", "plain"),
        "astronaut-mirror": ("astronaut", "mirror"),
        "astronaut-tilt-left": ("astronaut", "rot+14"),
        "astronaut-tilt-right": ("astronaut", "rot-11"),
        "astronaut-tight-crop": ("astronaut", "tight"),
        "astronaut-dim": ("astronaut", "dim"),
        "astronaut-small": ("astronaut", "small"),
        "cameraman": ("camera", "plain"),
        "cameraman-mirror": ("camera", "mirror"),
    }
    for i in range(_LFW_FACES):
        v[f"lfw-{i:03d}"] = (f"lfw:{i}", "upscale")
    return v


def demo_names() -> list[str]:
    """The names of the demo pictures (what :func:`demo_bytes` takes)."""
    return list(_variants())


@cache
def demo_bytes(name: str) -> bytes:
    """PNG bytes of one demo picture (deterministic)."""
    from PIL import Image

    base, recipe = _variants()[name]
    img = _apply(_base(base), recipe)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _base(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError as e:  # pragma: no cover - scikit-image is a dependency
        raise RuntimeError("the demo source needs scikit-image (pip install scikit-image)") from e
    if name == "astronaut":
        return data.astronaut()
    if name == "camera":
        return np.repeat(data.camera()[..., None], 3, axis=2)
    if name.startswith("lfw:"):
        face = data.lfw_subset()[int(name[4:])]
        g = (np.clip(face, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    raise KeyError(name)


def _apply(img: np.ndarray, recipe: str) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if recipe == "plain":
        return img
    if recipe == "mirror":
        return np.ascontiguousarray(img[:, ::-1])
    if recipe.startswith("rot"):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(recipe[3:]), 1.0)
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT_101)
    if recipe == "tight":  # face touching the right and bottom border
        return np.ascontiguousarray(img[40:260, 90:260])
    if recipe == "dim":
        return (img.astype(np.float32) * 0.55 + 6).clip(0, 255).astype(np.uint8)
    if recipe == "small":
        return cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA)
    if recipe == "upscale":
        return cv2.resize(img, (w * 8, h * 8), interpolation=cv2.INTER_CUBIC)
    raise KeyError(recipe)
