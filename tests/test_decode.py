"""Decoding: every awkward input either becomes an upright RGB array or a named reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import exif_rotated_jpeg, jpeg_bytes, png_bytes
from PIL import Image

from maskface.maskgen.decode import BadImage, decode_image


def test_plain_and_converted_modes_give_rgb(astronaut):
    for data in (jpeg_bytes(astronaut), png_bytes(astronaut.mean(2).astype(np.uint8), "L")):
        out = decode_image(data)
        assert out.shape == (512, 512, 3) and out.dtype == np.uint8


def test_sixteen_bit_png_keeps_its_contrast(astronaut):
    gray16 = (astronaut.mean(2) * 257).astype(np.uint16)
    out = decode_image(png_bytes(gray16, "I;16"))
    # Clipping 16-bit values into 8 bits would saturate nearly everything to 255.
    assert abs(float(out.mean()) - float(astronaut.mean())) < 3
    assert out.std() > 30


def test_cmyk_and_alpha(astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).convert("CMYK").save(buf, format="JPEG")
    out = decode_image(buf.getvalue())
    assert np.abs(out.astype(int) - astronaut).mean() < 12
    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])
    out = decode_image(png_bytes(rgba))
    assert (out == 128).all()  # fully transparent composites over mid-gray, not black


def test_exif_orientation_is_applied(astronaut):
    out = decode_image(exif_rotated_jpeg(astronaut[:, :400]))
    assert out.shape == (512, 400, 3)  # upright, as displayed
    assert np.abs(out.astype(int) - astronaut[:, :400]).mean() < 6


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"GIF89a-but-no-more", "not-an-image"),  # a signature and nothing PIL can read
    (b"plain text, not a picture" * 10, "not-an-image"),
])
def test_bad_bytes_are_named(data, reason):
    with pytest.raises(BadImage) as e:
        decode_image(data)
    assert e.value.reason == reason


def test_truncated_jpeg(astronaut):
    data = jpeg_bytes(astronaut)
    with pytest.raises(BadImage) as e:
        decode_image(data[: len(data) // 2])
    assert e.value.reason == "truncated"


def test_tiny_image_is_refused():
    for shape in ((10, 12, 3), (47, 300, 3)):
        with pytest.raises(BadImage) as e:
            decode_image(png_bytes(np.zeros(shape, np.uint8)))
        assert e.value.reason == "too-small"
        assert f"{shape[1]}x{shape[0]} px" in e.value.detail
    assert decode_image(png_bytes(np.zeros((48, 48, 3), np.uint8))).shape == (48, 48, 3)


def test_huge_jpeg_is_reduced_in_the_decoder():
    big = np.zeros((900, 8200, 3), np.uint8)
    big[:, ::2] = 200
    out = decode_image(jpeg_bytes(big), max_side=2048)
    assert max(out.shape[:2]) <= 2048 and out.shape[1] > out.shape[0]


def test_rejections_share_one_shape():
    """An undecodable picture, a picture without a face and a mask that cannot be placed are
    one kind of error: a reason tag and a detail (what failures.jsonl records)."""
    from maskface.maskgen.landmarks import NoFace
    from maskface.maskgen.rejection import Rejection
    from maskface.maskgen.render import RenderError

    for cls in (BadImage, NoFace, RenderError):
        e = cls("some-reason", "what was seen")
        assert isinstance(e, Rejection) and isinstance(e, ValueError)
        assert (e.reason, e.detail, str(e)) == ("some-reason", "what was seen",
                                                "some-reason: what was seen")
        assert str(cls("alone")) == "alone" and cls("alone").detail == ""
