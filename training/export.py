"""``maskface export``: a checkpoint as an ONNX model for deployment.

The graph takes ``masked`` (N, 3, H, W) float RGB in [0, 1], H and W multiples of
``2 ** (depth - 1)``, and returns ``restored`` of the same size: RGB, then, for a model with a
mask head, a fourth channel saying where the mask is (``maskface.outputs`` in the metadata);
batch, height and width are dynamic. A refill model's graph holds its two passes
(:class:`.refill.BothPasses`; ``maskface.passes`` is 2), sized for its trained crop side. The
crop size the model was trained on and the side multiple are stored as metadata. When
onnxruntime is installed the export is checked against PyTorch on the spot.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .predict import Predictor
from .refill import BothPasses

OPSET = 17
PARITY_TOLERANCE = 1e-3  # outputs are in [0, 1]; float32 reorderings differ by ~1e-6


def export_onnx(checkpoint: str | Path, path: str | Path, opset: int = OPSET,
                check: bool = True) -> dict:
    """Write ``path``; returns what was written and, with ``check``, the largest difference
    between onnxruntime's output and PyTorch's on a random batch (None without onnxruntime)."""
    try:
        import onnx
    except ImportError as e:
        raise RuntimeError("export needs the onnx package: pip install 'maskface[export]'") from e
    pred = Predictor.load(checkpoint, device="cpu", precision="fp32")
    model = pred.model.float().eval()
    if model.cfg.refill:  # the graph holds both passes, as the model is used
        model = BothPasses(model).eval()
    size = pred.image_size
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    kw = {"input_names": ["masked"], "output_names": ["restored"], "opset_version": opset,
          "dynamic_axes": {"masked": dynamic, "restored": dynamic}}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of one that needs onnxscript;
        # this one needs only onnx, and handles this plain convolutional graph exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        # A refill graph's mask growth is sized for the crop side it is traced at, on purpose.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(model, (x,), str(path), dynamo=False, **kw)
        except TypeError:  # torch < 2.5 has no `dynamo` switch (and only this exporter)
            torch.onnx.export(model, (x,), str(path), **kw)
    proto = onnx.load(str(path))
    for k, v in {"maskface.image_size": size, "maskface.side_multiple": pred.multiple,
                 "maskface.model": pred.label, "maskface.input_range": "0..1 RGB",
                 "maskface.outputs": "RGB, mask" if pred.has_mask_head else "RGB",
                 "maskface.passes": 2 if pred.model.cfg.refill else 1}.items():
        proto.metadata_props.add(key=k, value=str(v))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    info = {"onnx": str(path), "bytes": path.stat().st_size, "opset": opset,
            "image_size": size, "side_multiple": pred.multiple, "max_abs_diff": None}
    if check:
        diff = parity(model, path, size, pred.multiple)
        info["max_abs_diff"] = diff
        if diff is None:
            warnings.warn("onnxruntime is not installed: the export was not checked against "
                          "PyTorch (pip install onnxruntime)", stacklevel=2)
        elif diff > PARITY_TOLERANCE:
            raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {diff:.2e} "
                               f"(> {PARITY_TOLERANCE}); do not deploy it")
    return info


def parity(model: torch.nn.Module, path: str | Path, size: int, multiple: int
           ) -> float | None:
    """Largest |onnxruntime - PyTorch| on two random batches of different shapes; None when
    onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    half = max(multiple, size // 2 // multiple * multiple)
    for shape in ((1, 3, size, size), (2, 3, size, half)):
        x = torch.rand(*shape, generator=g)
        with torch.inference_mode():
            ref = model(x).numpy()
        got = sess.run(["restored"], {"masked": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
