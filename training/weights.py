"""Model weights as safetensors files: tensors and a little text metadata, no pickle.

The format is simple enough to read and write here without the ``safetensors`` package (GPU
images and minimal installs may lack it): an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte range (plus ``__metadata__``, strings only), then
the raw little-endian bytes. Files written here load with ``safetensors.torch.load_file`` and
the other way round (``tests/test_weights.py``).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
_BY_NAME = {v: k for k, v in _DTYPES.items()}
MAX_HEADER = 100 * 2**20  # a header larger than this is not a weights file


class WeightsError(ValueError):
    """A file that is not a readable safetensors file."""


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str]) -> None:
    """Write ``tensors`` and string ``metadata`` atomically as a safetensors file."""
    header: dict = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise WeightsError(f"{name}: dtype {t.dtype} cannot be stored")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the spec pads the header to 8 bytes with spaces
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file (read as data; nothing is executed)."""
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read {path} ({e})") from e
    if len(blob) < 8:
        raise WeightsError(f"{path} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > min(MAX_HEADER, len(blob) - 8):
        raise WeightsError(f"{path} is not a safetensors file (bad header length)")
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        raise WeightsError(f"{path} is not a safetensors file ({e})") from e
    meta = header.pop("__metadata__", {}) or {}
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, h in header.items():
        try:
            dtype = _BY_NAME[h["dtype"]]
            start, end = h["data_offsets"]
            shape = [int(s) for s in h["shape"]]
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{path}: tensor {name!r} has a bad header") from e
        if not 0 <= start <= end <= len(data):
            raise WeightsError(f"{path}: tensor {name!r} lies outside the file")
        t = torch.frombuffer(bytearray(data[start:end]), dtype=torch.uint8) if end > start \
            else torch.empty(0, dtype=torch.uint8)
        try:
            tensors[name] = t.view(dtype).reshape(shape)
        except RuntimeError as e:
            raise WeightsError(f"{path}: tensor {name!r} has {end - start} bytes for "
                               f"{h['dtype']} {shape}") from e
    return tensors, {str(k): str(v) for k, v in meta.items()}
