"""Turn the bytes of any image file into an upright RGB uint8 array, or say why not.

Users point maskgen at folders they did not curate: zero-byte files, truncated JPEGs, text files
named ``.jpg``, CMYK, 16-bit PNGs, photos rotated by EXIF. Every one of them either decodes to a
plain RGB array or raises :class:`BadImage` with a reason that goes into ``failures.jsonl``.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .rejection import Rejection

# Faces in huge photos are found at this resolution; more only costs time (see decode_image).
MAX_WORKING_SIDE = 4096
# Below this FaceMesh finds no real face: scikit-image's astronaut shrunk to 22-43 px gives
# no face, eyes under its 4 px limit, or fits several eye distances off the face; at 52 px
# and more its landmarks are within ~10 % of the eye distance of those at full size.
MIN_SIDE = 48
# PIL refuses images above ~179 Mpx as decompression bombs; we decode big JPEGs reduced
# (draft mode), so allow large files but still refuse absurd headers.
Image.MAX_IMAGE_PIXELS = 40_000 * 40_000
ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImage(Rejection):
    """An input that cannot be decoded into a picture."""


def decode_image(data: bytes, max_side: int = MAX_WORKING_SIDE) -> np.ndarray:
    """Decode image bytes to an upright ``(H, W, 3)`` uint8 RGB array.

    EXIF orientation is applied; grayscale, palette, CMYK, alpha and 16-bit inputs are converted
    (alpha is composited over mid-gray so transparent areas do not turn black). Images whose longer
    side exceeds ``max_side`` are reduced (JPEGs in the decoder itself, which is much faster).

    Raises:
        BadImage: with reason ``empty``, ``not-an-image``, ``truncated``, ``corrupt``,
            ``too-large`` or ``too-small``.
    """
    if not data:
        raise BadImage("empty", "zero-byte file")
    fast = _decode_plain_jpeg(data, max_side)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format == "JPEG" and max(img.size) > max_side:
                img.draft("RGB", (img.size[0] * max_side // max(img.size),
                                  img.size[1] * max_side // max(img.size)))
            img.load()
    except UnidentifiedImageError as e:
        raise BadImage("not-an-image", "no known image format") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage("too-large", str(e)) from e
    except OSError as e:
        msg = str(e)
        reason = "truncated" if "truncated" in msg or "broken data" in msg else "corrupt"
        raise BadImage(reason, msg) from e
    except (ValueError, SyntaxError, EOFError) as e:  # PIL raises these for mangled headers
        raise BadImage("corrupt", str(e)) from e

    # A broken EXIF block should not cost the picture: keep it as stored.
    with contextlib.suppress(Exception):
        img = ImageOps.exif_transpose(img)
    rgb = _to_rgb(img)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise BadImage("too-small", f"{w}x{h} px")
    if max(h, w) > max_side:
        import cv2

        s = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def _jpeg_info(data: bytes) -> tuple[int, int, int] | None:
    """(components, width, height) from a JPEG's frame header, or None if it has none."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        seg = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return data[i + 9], w, h
        i += 2 + seg
    return None


def _decode_plain_jpeg(data: bytes, max_side: int) -> np.ndarray | None:
    """OpenCV's decoder for the common case, about twice as fast as PIL's: a complete
    (ends with its EOI marker) YCbCr or grayscale JPEG of normal size. OpenCV applies
    EXIF orientation itself. Anything else returns None and goes through PIL, which reports
    truncation and odd colour spaces properly."""
    if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return None
    info = _jpeg_info(data)
    if info is None or info[0] not in (1, 3) or not min(info[1:]) >= MIN_SIDE:
        return None
    if max(info[1:]) > max_side:
        return None
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA")).astype(np.float32)
        a = rgba[..., 3:4] / 255.0
        return (rgba[..., :3] * a + 128.0 * (1.0 - a) + 0.5).astype(np.uint8)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)
