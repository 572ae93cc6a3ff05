"""The colour-balanced copies detect_faces looks at again when it found no face in a photo
whose colour is off: real pictures from scikit-image, tinted and washed out."""

from __future__ import annotations

import numpy as np
import pytest

from maskface.maskgen.colour_balance import (
    BALANCED_COPIES,
    COLOUR_CAST,
    LOW_CONTRAST,
    channel_ranges,
    colour_cast,
    grey_world,
    needs_balance,
    stretched,
)


def _tinted(rgb: np.ndarray, gains=(0.25, 0.5, 1.0)) -> np.ndarray:
    """The photo as under a blue light: red and green dimmed."""
    return (rgb * np.array(gains)).astype(np.uint8)


def _washed_out(rgb: np.ndarray, keep: float = 0.4) -> np.ndarray:
    """The photo with its contrast cut to ``keep`` around mid-grey (fog, a flat scan)."""
    return (rgb * keep + 128 * (1 - keep)).astype(np.uint8)


def test_an_ordinary_photo_is_not_looked_at_again(astronaut):
    assert colour_cast(astronaut) < COLOUR_CAST
    assert not needs_balance(astronaut)


def test_a_photo_under_blue_light_has_a_cast_that_grey_world_removes(astronaut):
    blue = _tinted(astronaut)
    assert colour_cast(blue) > 2.5 and needs_balance(blue)
    balanced = grey_world(blue)
    assert balanced.shape == blue.shape and balanced.dtype == np.uint8
    assert colour_cast(balanced) < 1.05


def test_a_washed_out_photo_is_stretched_to_the_full_range(astronaut):
    flat = _washed_out(astronaut)
    low, high = channel_ranges(flat)
    assert (high - low).min() < LOW_CONTRAST and needs_balance(flat)
    low, high = channel_ranges(stretched(flat))
    np.testing.assert_allclose(low, 0, atol=2)
    np.testing.assert_allclose(high, 255, atol=2)


def test_stretching_also_removes_a_cast_and_keeps_every_pixel_in_place(astronaut):
    blue = _tinted(astronaut)
    out = stretched(blue)
    assert colour_cast(out) < COLOUR_CAST  # 2.75 tinted; the astronaut herself 1.47
    # A colour map, pixel by pixel: a pixel's new value depends only on its old one.
    flat_in, flat_out = blue.reshape(-1, 3), out.reshape(-1, 3)
    for c in range(3):
        _, first = np.unique(flat_in[:, c], return_index=True)
        mapped = dict(zip(flat_in[first, c], flat_out[first, c], strict=True))
        assert all(mapped[v] == w for v, w in zip(flat_in[::97, c], flat_out[::97, c],
                                                   strict=True))


@pytest.mark.parametrize("name", [name for name, _ in BALANCED_COPIES])
def test_each_copy_of_a_grey_photo_stays_grey(name):
    from skimage import data

    balance = dict(BALANCED_COPIES)[name]
    grey = np.repeat(data.camera()[..., None], 3, axis=2)
    out = balance(grey)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
