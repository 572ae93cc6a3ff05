"""The names the trainer knows, as plain data (no torch), so the command line can offer them
as choices without importing the trainer.

``VARIANTS``: the paper's ablation (Table II), one network with two switches. ``NORMS``: what
follows each conv. ``AUGMENTS``: the training augmentations (``augment.py``). ``LR_SCHEDULES``: the
learning rate over a run (``train.py``).
"""

from __future__ import annotations

VARIANTS: dict[str, dict[str, bool]] = {
    "unet": {"residual": False, "attention": False},
    "attention-unet": {"residual": False, "attention": True},
    "ra-unet": {"residual": True, "attention": True},
}
NORMS = ("none", "batch")
AUGMENTS = ("paper", "flip", "none")
LR_SCHEDULES = ("constant", "cosine")
# What ``maskface eval`` measures beside the networks (``evaluate.py``).
BASELINES = ("masked-input", "telea", "navier-stokes")
