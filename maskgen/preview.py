"""Contact sheets: a few faces, each clean and then under every selected mask type."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .crops import crop_side
from .decode import decode_image
from .hands import find_hands
from .landmarks import detect_landmarks
from .rejection import Rejection
from .samples import SampleRules, face_samples, maskable_face
from .sources import read_source, resolve_source
from .templates import WEAR_SHIFT, select_types

FONT = cv2.FONT_HERSHEY_SIMPLEX


def make_sheet(src: str, out: str, *, types: str = "all", faces: int = 6, seed: int = 0,
               size: int = 192, celeba_root: str | None = None,
               templates: tuple[str, ...] = (), keys: list[str] | None = None,
               wear: str = "proper", crop: str = "default", hands: bool = True,
               hair: bool = True, frame_cut: float = 0.0) -> dict:
    """Write a PNG grid (a header naming the columns, then a row per face: clean, then each
    type) and describe it. The samples are ``generate``'s (:func:`.samples.face_samples`, the
    same colours for the same seed); those it would not write (turned too far for the type,
    not drawable, placement check) are dimmed, labelled with the reason and listed under
    ``rejected``. ``crop`` as in ``generate`` (an ``arcfaceN`` crop sets the tile size).
    ``hands``: find the hands near each face and keep them in front of the masks, as
    ``generate`` does by default; ``hair``: likewise the hair over the cheeks; ``frame_cut``:
    the share of faces cut off by the frame below the lips, as ``generate --frame-cut`` cuts
    them (the same faces for the same seed; 1: every face)."""
    if wear not in WEAR_SHIFT:
        raise ValueError(f"unknown wear style {wear!r}; known: {', '.join(WEAR_SHIFT)}")
    names = select_types(types, templates)
    if not 0 <= frame_cut <= 1:
        raise ValueError(f"frame_cut must be between 0 and 1, got {frame_cut}")
    rules = SampleRules(tuple(names), seed, "all", {wear: 1.0}, frame_cut=frame_cut,
                        templates=templates, crop=crop, hair=hair)
    size = crop_side(crop, size)
    _, items = resolve_source(src, celeba_root=celeba_root)
    if keys:  # the rows in the order asked for; a key the source lacks is an error, not a gap
        by_key = {i.key: i for i in items}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise ValueError(missing_keys_message(src, missing, [i.key for i in items]))
        items = [by_key[k] for k in dict.fromkeys(keys)]
        faces = max(faces, len(items))
    rows, used, skipped = [], [], []
    rejected: dict[str, dict[str, str]] = {}
    for item in items:
        if len(rows) >= faces:
            break
        try:
            rgb = decode_image(read_source(item))
            det = detect_landmarks(rgb)
        except (OSError, Rejection) as e:
            skipped.append(f"{item.key}: {e}")
            continue
        # generate's own occluders: the hands near the face (and, with the rules' hair, the
        # hair over its cheeks) stay in front of its masks.
        face = maskable_face(rgb, det.points, size, item.key, rules,
                             find_hands(rgb, det.points) if hands else ())
        tiles = [face.framed(face.crop)]
        for sample in face_samples(face, rules):
            drawn = face.framed(sample.rendered.masked if sample.rendered is not None
                                else face.crop)
            if sample.reason:
                rejected.setdefault(item.key, {})[sample.type] = sample.reason
                tiles.append(_rejected_tile(drawn, sample.reason))
            else:
                tiles.append(drawn)
        rows.append(np.hstack(tiles))
        used.append(item.key)
    if not rows:
        raise ValueError(f"no usable face in {src}: {'; '.join(skipped[:5])}")
    columns = ["clean", *names]
    sheet = np.vstack([column_header(columns, size), *rows])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return {"out": str(out), "faces": used, "columns": columns, "skipped": skipped,
            "rejected": rejected}


def missing_keys_message(where: str, missing: list[str], known: list[str]) -> str:
    """The error for ``--keys`` naming sources that ``where`` lacks: the missing keys, and how
    many sources it has with the first few of them, so that a wrong guess at the key's form
    (a path, an extension) shows itself without listing thousands of keys."""
    more = f", and {len(missing) - 5} more" if len(missing) > 5 else ""
    some = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
    count = f"{len(known):,} source{'' if len(known) == 1 else 's'}"
    return (f"{where} has no source named {', '.join(missing[:5])}{more} (--keys takes source "
            f"keys; it has {count}: {some})")


def column_header(columns: list[str], tile: int, height: int | None = None) -> np.ndarray:
    """A white strip naming each ``tile``-wide column in black, centred (long names shrunk to
    fit): ``(height, tile * len(columns), 3)`` uint8; ``height`` defaults to ``tile // 8``
    (at least 16 px)."""
    height = height or max(16, tile // 8)
    strip = np.full((height, tile * len(columns), 3), 255, np.uint8)
    for k, name in enumerate(columns):
        scale = height / 40  # the font's capitals are ~22 px high at scale 1
        width = cv2.getTextSize(name, FONT, scale, 1)[0][0]
        scale *= min(1.0, (tile - 8) / max(width, 1))
        (width, high), _ = cv2.getTextSize(name, FONT, scale, 1)
        cv2.putText(strip, name, (k * tile + (tile - width) // 2, (height + high) // 2), FONT,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def _rejected_tile(img: np.ndarray, reason: str) -> np.ndarray:
    """A sample ``generate`` would not write: dimmed, with the reason written across it."""
    tile = (img.astype(np.float32) * 0.35).astype(np.uint8)
    scale = img.shape[1] / 400
    cv2.putText(tile, reason, (4, img.shape[0] - 8), FONT, scale,
                (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA)
    return tile


def sheet_from_shards(out_dir: str, path: str, *, samples: int = 24, columns: int = 4,
                      split: str | None = None, keys: list[str] | None = None) -> dict:
    """A PNG of generated pairs, as they were written: masked | mask | clean per sample under
    a label naming its source key and mask type, ``columns`` samples per row, from the run's
    shards in order: one pair per face first, so that a ``--per-face all`` run shows
    ``samples`` faces rather than every type of a few; a face's other pairs fill the sheet
    when the run has fewer faces.

    ``keys`` (source keys): only those faces' pairs, a face's pairs together and the faces in
    the order given; every face gets at least one pair, and its other pairs fill the sheet
    up to ``samples`` in that order. A key the run has no pair of is an error naming it."""
    import json

    from .shards import decode_sample, iter_samples

    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())

    def written():
        """(source key, raw sample) over the run's shards, in order."""
        for name, sp in manifest["splits"].items():
            if split and name != split:
                continue
            for shard in sp["shards"]:
                for raw in iter_samples(Path(out_dir) / shard["path"]):
                    # Only the metadata is read here; the chosen pairs' images are decoded
                    # below.
                    yield json.loads(raw["json"]).get("source", raw["__key__"]), raw

    if keys:
        wanted: dict[str, list[dict]] = {k: [] for k in keys}
        sources: set[str] = set()  # every face in the run, for the error
        for source, raw in written():  # a face's pairs may lie anywhere: read every shard
            sources.add(source)
            if source in wanted:
                wanted[source].append(raw)
        missing = [k for k, pairs in wanted.items() if not pairs]
        if missing:
            raise ValueError(missing_keys_message(str(out_dir), missing, sorted(sources)))
        spare = max(samples - len(wanted), 0)
        chosen = []
        for pairs in wanted.values():
            chosen += pairs[:1 + spare]
            spare -= len(pairs[1:1 + spare])
    else:
        firsts: list[dict] = []
        others: list[dict] = []
        faces: set[str] = set()
        for source, raw in written():
            if source not in faces:
                faces.add(source)
                firsts.append(raw)
            elif len(others) < samples:
                others.append(raw)
            if len(firsts) >= samples:
                break
        chosen = (firsts + others)[:samples]
    tiles, names = [], []
    for raw in chosen:
        s = decode_sample(raw)
        mask = np.repeat(s["mask"][..., None], 3, axis=2)
        side = s["masked"].shape[1]
        # Each pair under its source key and mask type (and wear style, where not the usual),
        # in the per-face sheet's header style: a face's several pairs are told apart.
        meta = s["json"]
        label = f"{meta.get('source', s['__key__'])}: {meta.get('type', '?')}"
        if meta.get("wear", "proper") != "proper":
            label += f", {meta['wear']}"
        tiles.append(np.vstack([column_header([label], 3 * side, max(16, side // 8)),
                                np.hstack([s["masked"], mask, s["clean"]])]))
        names.append(s["__key__"])
    if not tiles:
        raise ValueError(f"no samples in {out_dir}")
    while len(tiles) % columns:
        tiles.append(np.vstack([np.full_like(tiles[0][:-side], 255),
                                np.zeros_like(tiles[0][-side:])]))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    rows = [np.hstack([x for t in tiles[i:i + columns] for x in (t, gap)][:-1])
            for i in range(0, len(tiles), columns)]
    sheet = np.vstack(rows)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return {"out": str(path), "samples": names}
