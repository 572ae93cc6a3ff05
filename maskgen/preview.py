"""Contact sheets: a few faces, each clean and then under every selected mask type."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .align import align_face
from .decode import BadImage, decode_image
from .landmarks import NoFace, detect_landmarks
from .render import RenderError, render_mask
from .sources import read_source, resolve_source
from .templates import registry, select_types


def make_sheet(src: str, out: str, *, types: str = "all", faces: int = 6, seed: int = 0,
               size: int = 192, celeba_root: str | None = None,
               templates: tuple[str, ...] = (), keys: list[str] | None = None) -> dict:
    """Write a PNG grid (rows: faces; columns: clean, then each type) and describe it."""
    names = select_types(types, templates)
    reg = registry(templates)
    _, items = resolve_source(src, celeba_root=celeba_root)
    if keys:
        wanted = set(keys)
        items = [i for i in items if i.key in wanted]
    rows, used, skipped = [], [], []
    for item in items:
        if len(rows) >= faces:
            break
        try:
            rgb = decode_image(read_source(item))
            det = detect_landmarks(rgb)
        except (OSError, BadImage, NoFace) as e:
            skipped.append(f"{item.key}: {e}")
            continue
        crop, _, pts = align_face(rgb, det.points, size)
        tiles = [crop]
        for k, name in enumerate(names):
            rng = np.random.default_rng([seed, len(rows), k])
            try:
                tiles.append(render_mask(crop, pts, reg[name], rng).masked)
            except RenderError:
                tiles.append(np.zeros_like(crop))
        rows.append(np.hstack(tiles))
        used.append(item.key)
    if not rows:
        raise ValueError(f"no usable face in {src}: {'; '.join(skipped[:5])}")
    sheet = np.vstack(rows)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return {"out": str(out), "faces": used, "columns": ["clean", *names], "skipped": skipped}
