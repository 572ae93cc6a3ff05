"""Shared fixtures: real faces from scikit-image, a folder of good and bad inputs, and
../shared/data when it is there."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def celeba_wild_face(key: str) -> tuple[np.ndarray, np.ndarray]:
    """A shared ``celeba-wild`` face (RGB) and its detected landmarks (tests that call it
    carry :func:`needs_shared`)."""
    import cv2

    from maskface.maskgen.landmarks import detect_landmarks

    rgb = cv2.cvtColor(cv2.imread(str(SHARED_DATA / "celeba-wild" / f"{key}.jpg")),
                       cv2.COLOR_BGR2RGB)
    return rgb, detect_landmarks(rgb).points


def needs_shared() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (SHARED_DATA / "celeba-wild").is_dir(),
                              reason=f"needs the test faces in {SHARED_DATA} (absent)")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def png_bytes(img: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(img)
    if mode == "I;16":
        im = Image.frombytes("I;16", img.shape[::-1], img.astype("<u2").tobytes())
    elif mode:
        im = im.convert(mode)
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(img: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory, astronaut) -> Path:
    """Six usable real-face pictures in nested folders with mixed-case extensions."""
    from skimage import data

    root = tmp_path_factory.mktemp("faces")
    (root / "sub" / "deeper").mkdir(parents=True)
    cam = np.repeat(data.camera()[..., None], 3, axis=2)
    (root / "astronaut.jpg").write_bytes(jpeg_bytes(astronaut))
    (root / "sub" / "mirror.PNG").write_bytes(png_bytes(np.ascontiguousarray(astronaut[:, ::-1])))
    (root / "sub" / "deeper" / "small.JPEG").write_bytes(
        jpeg_bytes(np.asarray(Image.fromarray(astronaut).resize((200, 200)))))
    (root / "camera.bmp").write_bytes(_bmp(cam))
    (root / "dim.webp").write_bytes(_webp((astronaut * 0.6).astype(np.uint8)))
    (root / "gray.png").write_bytes(png_bytes(astronaut.mean(2).astype(np.uint8), "L"))
    (root / "notes.txt").write_text("not an image, and not picked up")
    return root


def _bmp(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="BMP")
    return buf.getvalue()


def _webp(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="WEBP", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def bad_folder(tmp_path_factory, astronaut) -> Path:
    """Every kind of bad or awkward input the generator must survive, plus two good faces."""
    from skimage import data

    root = tmp_path_factory.mktemp("bad")
    good = jpeg_bytes(astronaut)
    (root / "good.jpg").write_bytes(good)
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "text.png").write_bytes(b"this is not a picture at all\n" * 20)
    (root / "noface.png").write_bytes(png_bytes(data.coffee()))
    (root / "tiny.png").write_bytes(png_bytes(astronaut[::16, ::16].copy()))  # 32x32
    cmyk = io.BytesIO()
    Image.fromarray(astronaut).convert("CMYK").save(cmyk, format="JPEG", quality=92)
    (root / "cmyk.jpg").write_bytes(cmyk.getvalue())
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    (root / "rgba.png").write_bytes(png_bytes(rgba))
    sixteen = (astronaut.mean(2) * 257).astype(np.uint16)
    (root / "sixteen.png").write_bytes(png_bytes(sixteen, "I;16"))
    (root / "rotated.jpg").write_bytes(exif_rotated_jpeg(astronaut))
    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    return root


def exif_rotated_jpeg(upright: np.ndarray) -> bytes:
    """A JPEG whose pixels are stored turned 90 degrees, with EXIF orientation 6 saying so
    (as phones write them): decoders that ignore EXIF see a sideways face."""
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()
