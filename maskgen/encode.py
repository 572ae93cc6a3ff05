"""Image encoders for shard members: fast, deterministic bytes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Baseline JPEG of an RGB uint8 image (libjpeg-turbo through OpenCV; deterministic)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_png_rgb(rgb: np.ndarray) -> bytes:
    """Lossless PNG of an RGB uint8 image."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_png_gray(gray: np.ndarray, level: int = 1) -> bytes:
    """An 8-bit grayscale PNG, written directly with zlib.

    Binary masks are mostly runs of 0 and 255; without row filters zlib squeezes them to about
    1 KB, and skipping a general-purpose encoder's per-row filter search makes this ~10x faster
    than ``cv2.imencode`` for a 256 px mask (it dominated shard writing).
    """
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError("encode_png_gray needs a 2-D uint8 array")
    h, w = gray.shape
    raw = np.zeros((h, w + 1), np.uint8)  # filter type 0 (None) at the start of each row
    raw[:, 1:] = gray
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
