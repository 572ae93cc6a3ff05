"""A trained model ready to use: load a checkpoint once, restore images many times.

``Predictor`` serves ``maskface eval``, ``maskface unmask`` and the tests. It picks the device
and precision (bf16 autocast and channels_last on CUDA, fp32 on the CPU), pads images whose
sides the network cannot divide, and returns images in the form it was given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_model, pick_device, use_bf16
from .data import image_size
from .model import RAUNet
from .refill import two_pass

DEFAULT_IMAGE_SIZE = 256
log = logging.getLogger("maskface.predict")


def device_name(device: torch.device) -> str:
    """A human name for a device, e.g. 'NVIDIA H100 80GB HBM3' or 'CPU: AMD EPYC ... x2'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model or 'unknown'}, {torch.get_num_threads()} threads"


@dataclass
class Predictor:
    """A model on a device. Call it on a float batch, or use :meth:`restore` on uint8 RGB."""

    model: RAUNet
    device: torch.device
    precision: str  # "bf16" or "fp32"
    image_size: int  # the aligned crop side the model was trained on
    label: str

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "auto", precision: str = "auto",
             label: str | None = None) -> Predictor:
        """Load a ``maskface train`` checkpoint (``weights_only``: no code runs from it) or a
        safetensors model file."""
        dev = pick_device(device)
        model, info = load_model(checkpoint)
        return cls.on_device(model, dev, precision, _trained_size(info, checkpoint),
                             label or model.cfg.model)

    @classmethod
    def on_device(cls, model: RAUNet, device: torch.device, precision: str, image_size: int,
                  label: str) -> Predictor:
        """Put a model on ``device`` with the precision and memory layout training uses there
        (``precision``: auto, bf16 or fp32, as in ``maskface train``)."""
        fast = use_bf16(precision, device)
        model = model.to(device, memory_format=torch.channels_last if fast
                         else torch.preserve_format).eval()
        return cls(model, device, "bf16" if fast else "fp32", image_size, label)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (one halving per level below the top)."""
        return 2 ** (self.model.cfg.depth - 1)

    @property
    def has_mask_head(self) -> bool:
        """Whether the model also says where the mask is (a fourth output channel)."""
        return self.model.cfg.mask_head

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a (N, 3, H, W) float batch in [0, 1]; returns the restored images on the
        model's device (without the mask estimate; see :meth:`predict`)."""
        return self.predict(x)[:, :3]

    def predict_at_trained_size(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`predict` for crops of another side than the model learnt on: resampled to
        the model's side and the output back to the crop's, as unmask aligns photos at the
        model's side (a 128 px model run on 256 px crops directly sees faces twice too big)."""
        side = x.shape[-1]
        if side == self.image_size:
            return self.predict(x)
        small = F.interpolate(x.float(), size=(self.image_size, self.image_size), mode="area")
        y = self.predict(small)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False
                             ).clamp_(0, 1)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, both_passes: bool = False) -> torch.Tensor:
        """The network's whole output for a (N, 3, H, W) float batch in [0, 1]: RGB, then the
        mask estimate in [0, 1] when the model has a mask head (a refill model's two passes,
        :mod:`.refill`; ``both_passes``: on every image, as on a masked face, for timing)."""
        x = x.to(self.device, non_blocking=True).float()
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        fast = self.precision == "bf16"  # with channels_last, as the model (on_device)
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=fast):
            y = two_pass(self.model, x, both_passes) if self.model.cfg.refill else self.model(x)
        return y.float().clamp_(0, 1)[..., :h, :w]

    def restore(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Restore uint8 RGB images, (H, W, 3) or (N, H, W, 3), in batches; same shape out."""
        single = images.ndim == 3
        out, _ = self.restore_and_find(images[None] if single else images, batch_size)
        return out[0] if single else out

    def restore_and_find(self, images: np.ndarray, batch_size: int = 16
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """Restore uint8 RGB images (N, H, W, 3); also return the mask head's estimate
        (N, H, W floats in [0, 1]), or None when the model has no mask head."""
        out = np.empty_like(images)
        found = np.empty(images.shape[:3], np.float32) if self.has_mask_head else None
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size]))
            y = self.predict(x.permute(0, 3, 1, 2).float() / 255.0)
            out[i:i + batch_size] = to_uint8(y[:, :3])
            if found is not None:
                found[i:i + batch_size] = y[:, 3].float().cpu().numpy()
        return out, found


def _trained_size(ck: dict, path: str | Path) -> int:
    """The crop side a checkpoint was trained on: stored in it, else in its training data's
    manifest (older checkpoints), else the default, with a warning."""
    if ck.get("image_size"):
        return int(ck["image_size"])
    data = ck.get("train_config", {}).get("data")
    size = None
    if data:
        try:
            size = image_size(data)
        except (OSError, ValueError):
            size = None
    if not size:
        log.warning("%s does not say what crop size it was trained on; assuming %d px",
                    path, DEFAULT_IMAGE_SIZE)
    return int(size or DEFAULT_IMAGE_SIZE)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) floats in [0, 1] to (N, H, W, 3) uint8 on the CPU."""
    return (x.clamp(0, 1) * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
