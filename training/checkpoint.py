"""What a trained model is on disk, and where and how it runs.

A checkpoint is a ``torch.save`` dict (``format: maskface-checkpoint/1``): the model's weights
and config, the training config, the crop size the model learnt on, and, for resuming, the
optimiser, step, position in the epoch and RNG states. It is written atomically and loaded
with ``weights_only=True``, so no code runs from the file.

A model to ship is a safetensors file (``format: maskface-weights/1``, see ``weights.py``):
the weights in half precision, the model config, crop size and provenance as metadata, no
pickle at all. ``load_checkpoint`` reads both kinds into the same dict. The bundled model
(``DEFAULT_MODEL``) is one such file; commands use it when no ``--checkpoint`` is given.

The device and precision rules live here too: training, evaluation, prediction and export all
follow the same ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .model import RAUNet, config_from_dict
from .weights import WeightsError, load_weights, save_weights

FORMAT = "maskface-checkpoint/1"
WEIGHTS_FORMAT = "maskface-weights/1"
DEFAULT_MODEL = (Path(__file__).resolve().parent.parent / "assets" / "models"
                 / "ra-unet-w16-128-mask.safetensors")


class CheckpointError(RuntimeError):
    """A checkpoint or device that cannot be used (missing, not ours, no CUDA...)."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"--device {name}, but no CUDA device is available")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether a model runs on the bf16 + channels_last path: ``bf16`` always, ``fp32`` never,
    ``auto`` on CUDA. One rule for training, evaluation and prediction."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a crash never leaves a half-written checkpoint under ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state | {"format": FORMAT}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a ``maskface train`` checkpoint with ``weights_only=True`` (no code runs from the
    file), or a safetensors model file (weights as float32, its metadata as fields)."""
    if str(path).endswith(".safetensors"):
        return _load_weights_file(path, map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"no checkpoint at {path}") from e
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"{path} is not a maskface checkpoint ({e})") from e


# maskface 0.1 kept the shortcut, the gate's phi and the head as bare convolutions; the
# paper's layout wraps each in a Sequential (room for its BatchNorm / transposed conv).
_V01_KEYS = {"skip.weight": "skip.0.weight", "skip.bias": "skip.0.bias",
             "phi.weight": "phi.0.weight", "phi.bias": "phi.0.bias",
             "head.weight": "head.0.weight", "head.bias": "head.0.bias"}


def _upgrade_keys(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for old, new in _V01_KEYS.items():
            if k == old or k.endswith("." + old):
                k = k[: len(k) - len(old)] + new
                break
        out[k] = v
    return out


def model_from_checkpoint(ck: dict, path: str | Path) -> RAUNet:
    """The trained model a loaded checkpoint holds, rebuilt from the config it stores, in
    eval mode on the CPU."""
    if "model_config" not in ck or "model" not in ck:
        raise CheckpointError(f"{path} is not a maskface checkpoint (no model config)")
    try:
        cfg = config_from_dict(ck["model_config"])
        model = RAUNet(cfg)
        state = ck["model"] if cfg.layout == "paper" else _upgrade_keys(ck["model"])
        model.load_state_dict(state)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path} holds a model this maskface cannot rebuild ({e})") from e
    return model.eval()


def _load_weights_file(path: str | Path, map_location) -> dict:
    try:
        tensors, meta = load_weights(path)
        if meta.get("format") != WEIGHTS_FORMAT:
            raise WeightsError(f"format {meta.get('format')!r}, not {WEIGHTS_FORMAT}")
        ck = {"model_config": json.loads(meta["model_config"]),
              "image_size": int(meta["image_size"]),
              "about": {k: v for k, v in meta.items()
                        if k not in ("model_config", "image_size", "format")}}
    except FileNotFoundError as e:
        raise CheckpointError(f"no model file at {path}") from e
    except (WeightsError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path} is not a maskface model file ({e})") from e
    ck["model"] = {k: (v.float() if v.is_floating_point() else v).to(map_location)
                   for k, v in tensors.items()}
    return ck


def export_weights(checkpoint: str | Path, path: str | Path, about: dict[str, str] | None = None,
                   average_with: str | Path | None = None, average_weight: float = 0.5) -> dict:
    """Write a checkpoint's model as a safetensors file in half precision (what ships in
    ``assets/models/``), with its config, crop size and ``about`` (provenance) as metadata.
    ``average_with``: another checkpoint of the same network, fine-tuned from this one or it
    from this; the file then holds (1 - ``average_weight``) x this + ``average_weight`` x that
    (every float tensor, BatchNorm statistics too; the other's integer counters), which keeps
    much of both fine-tunes. Returns what was written."""
    ck = load_checkpoint(checkpoint, "cpu")
    model = model_from_checkpoint(ck, checkpoint)
    state = model.state_dict()
    # A model file exported again keeps its provenance (what it was trained on, its licence,
    # its step); what this export adds, and then ``about``, override it.
    provenance = dict(ck.get("about", {}))
    if average_with is not None:
        if not 0 <= average_weight <= 1:
            raise CheckpointError(f"the average's weight must be in [0, 1], got {average_weight}")
        other = model_from_checkpoint(load_checkpoint(average_with, "cpu"), average_with)
        if other.cfg != model.cfg:
            raise CheckpointError(f"{average_with} holds a {other.cfg.as_dict()} model, not "
                                  f"{model.cfg.as_dict()}: only the same network averages")
        theirs = other.state_dict()
        state = {k: ((1 - average_weight) * v + average_weight * theirs[k])
                 if v.is_floating_point() else theirs[k] for k, v in state.items()}
        provenance |= {"averaged_with": str(average_with),
                       "average_weight": str(average_weight)}
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    size = ck.get("image_size")
    if not size:
        raise CheckpointError(f"{checkpoint} does not say what crop size it was trained on")
    meta = {"format": WEIGHTS_FORMAT, "model_config": json.dumps(model.cfg.as_dict()),
            "image_size": str(size), "step": str(ck.get("step", "")), **provenance,
            **(about or {})}
    save_weights(path, state, meta)
    return {"path": str(path), "bytes": Path(path).stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()), "image_size": size}


def load_model(path: str | Path) -> tuple[RAUNet, dict]:
    """The model a checkpoint file holds (eval mode, CPU) and the checkpoint's other fields
    (without the weights and optimiser state)."""
    ck = load_checkpoint(path, "cpu")
    model = model_from_checkpoint(ck, path)
    return model, {k: v for k, v in ck.items() if k not in ("model", "optimizer", "rng")}
