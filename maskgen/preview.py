"""Contact sheets: a few faces, each clean and then under every selected mask type."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .align import align_face
from .decode import BadImage, decode_image
from .landmarks import NoFace, detect_landmarks
from .pipeline import sample_seed
from .render import RenderError, prepare_face, render_mask
from .sources import read_source, resolve_source
from .templates import registry, select_types


def make_sheet(src: str, out: str, *, types: str = "all", faces: int = 6, seed: int = 0,
               size: int = 192, celeba_root: str | None = None,
               templates: tuple[str, ...] = (), keys: list[str] | None = None,
               wear: str = "proper") -> dict:
    """Write a PNG grid (rows: faces; columns: clean, then each type) and describe it; samples
    that ``generate`` would not write (placement check, render error) are dimmed and listed
    under ``rejected`` with their reason."""
    names = select_types(types, templates)
    reg = registry(templates)
    _, items = resolve_source(src, celeba_root=celeba_root)
    if keys:
        wanted = set(keys)
        items = [i for i in items if i.key in wanted]
    rows, used, skipped = [], [], []
    rejected: dict[str, dict[str, str]] = {}
    for item in items:
        if len(rows) >= faces:
            break
        try:
            rgb = decode_image(read_source(item))
            det = detect_landmarks(rgb)
        except (OSError, BadImage, NoFace) as e:
            skipped.append(f"{item.key}: {e}")
            continue
        crop, m, pts = align_face(rgb, det.points, size)
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        context = prepare_face(crop, pts)
        tiles = [crop]
        for name in names:
            # The same randomness `generate` uses for this face and type (colour, pattern).
            rng = np.random.default_rng(sample_seed(seed, item.key, name))
            try:
                r = render_mask(crop, pts, reg[name], rng, wear=wear, source_scale=scale,
                                context=context)
            except RenderError as e:
                rejected.setdefault(item.key, {})[name] = e.reason
                tiles.append(np.zeros_like(crop))
                continue
            # The same placement check as `generate`: a sample it would not write is shown
            # dimmed and labelled, not as if it were data.
            problem = r.placement.problem(wear, reg[name].on_face)
            if problem:
                rejected.setdefault(item.key, {})[name] = problem
                tiles.append(_rejected_tile(r.masked, problem))
            else:
                tiles.append(r.masked)
        rows.append(np.hstack(tiles))
        used.append(item.key)
    if not rows:
        raise ValueError(f"no usable face in {src}: {'; '.join(skipped[:5])}")
    sheet = np.vstack(rows)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return {"out": str(out), "faces": used, "columns": ["clean", *names], "skipped": skipped,
            "rejected": rejected}


def _rejected_tile(img: np.ndarray, reason: str) -> np.ndarray:
    """A sample the placement check refuses: dimmed, with the reason written across it."""
    tile = (img.astype(np.float32) * 0.35).astype(np.uint8)
    scale = img.shape[1] / 400
    cv2.putText(tile, reason, (4, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA)
    return tile


def sheet_from_shards(out_dir: str, path: str, *, samples: int = 24, columns: int = 4,
                      split: str | None = None) -> dict:
    """A PNG of generated pairs, as they were written: masked | mask | clean per sample,
    ``columns`` samples per row, taken in order from the run's shards."""
    import json

    from .shards import decode_sample, iter_samples

    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    tiles, keys = [], []
    for name, sp in manifest["splits"].items():
        if split and name != split:
            continue
        for shard in sp["shards"]:
            for raw in iter_samples(Path(out_dir) / shard["path"]):
                s = decode_sample(raw)
                masked = s.get("masked")
                clean = s.get("clean")
                mask = np.repeat(s["mask"][..., None], 3, axis=2)
                tiles.append(np.hstack([masked, mask, clean]))
                keys.append(s["__key__"])
                if len(tiles) >= samples:
                    break
            if len(tiles) >= samples:
                break
        if len(tiles) >= samples:
            break
    if not tiles:
        raise ValueError(f"no samples in {out_dir}")
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    rows = [np.hstack([x for t in tiles[i:i + columns] for x in (t, gap)][:-1])
            for i in range(0, len(tiles), columns)]
    sheet = np.vstack(rows)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return {"out": str(path), "samples": keys}
