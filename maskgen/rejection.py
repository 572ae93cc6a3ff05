"""The one shape of every "this cannot be used" error: a short ``reason`` tag and a ``detail``.

A picture that cannot be decoded (:class:`.decode.BadImage`), holds no usable face
(:class:`.landmarks.NoFace`) or cannot wear a mask type (:class:`.render.RenderError`) is not a
crash: the generator records it in ``failures.jsonl`` and goes on, and ``unmask`` reports it.
"""

from __future__ import annotations


class Rejection(ValueError):
    """Why an input (or one sample of it) is not used: ``reason`` is a short machine-friendly
    tag (failures are counted by it), ``detail`` says what was seen."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
