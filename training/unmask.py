"""``maskface unmask``: remove masks from people's own photos.

Photo -> every face found (the real-photo face finder) -> aligned crop at the model's size
-> restored -> warped back and blended into the photo with a feathered seam.

Where the blend goes: a model with a mask head says where the mask is, and the blend covers
that mask (grown and feathered) and nothing else, so a face that wears no mask comes back
unchanged, byte for byte. A model without one blends the lower face and chin by default, or
with ``composite`` only what it changed. Pixels outside the blend keep their exact values, and
a crop that reaches past the photo's edge (a chin cut off by the frame) writes nothing there.
A photo without a usable face, or whose faces wear no mask (the mask head finds under 3 % of
the crop), is reported and written out unchanged: nothing is dropped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..maskgen.align import align_face, crop_footprint, paste_back
from ..maskgen.decode import BadImage, decode_image
from ..maskgen.facepoints import FACE_OVAL, LEFT_EYE, NOSE_BRIDGE, RIGHT_EYE, anchor_points
from ..maskgen.find_faces import MaskOpinion, detect_faces
from ..maskgen.landmarks import Detection, NoFace
from ..maskgen.sources import image_files
from .composite import change_mask, predicted_mask_weight
from .mask_opinion import mask_opinion
from .predict import Predictor
from .skin_tone import match_skin_tone

log = logging.getLogger("maskface.unmask")

# Masks cover the face from the nose bridge down (facepoints.NOSE_BRIDGE, just under the
# eyes): the lower-face blend is the face outline below it, so the eyes keep the photo's own
# sharpness.
# The jaw outline is also moved this far down (fraction of the crop side): masks such as
# gaiters cover the neck below the chin.
NECK_DROP = 0.12
FEATHER = 0.03  # Gaussian sigma of the seam, as a fraction of the crop side
EYE_MARGIN = 0.01  # the eyes, grown by this much, are never blended (see keep_eyes)
EDGE_FADE = 0.06  # the weight fades to 0 over this much of the crop's border
# A crop whose pixels' channels differ by at most this much (99th percentile, 8-bit) is a grey
# photo: over 900 photos (both real-masked dev folders, 300 celeba-wild) the two grey ones
# measure 0 and the least colourful colour one 15. Not face_evidence.photo_has_colour: a sepia
# photo has little chroma variation but a colour, which the restored face should keep.
GREY_SPREAD = 6
SHEET_PAGE = 24  # photos per contact sheet page: 8 rows of 3 before | after pairs
SHEET_COLUMNS = 3


def face_weight(points: np.ndarray, size: int) -> np.ndarray:
    """Blend weight (size x size floats) over the lower face and neck, in crop coordinates."""
    oval = points[list(FACE_OVAL), :2].astype(np.float32)
    top = float(points[NOSE_BRIDGE, 1])
    low = oval[oval[:, 1] >= top]
    neck = low[low[:, 1] > np.median(low[:, 1])] + (0, NECK_DROP * size)
    # Where the outline crosses the bridge's height, so the region's top edge is level.
    sides = np.array([[low[:, 0].min(), top], [low[:, 0].max(), top]], np.float32)
    hull = cv2.convexHull(np.concatenate([low, neck, sides]).astype(np.float32))
    w = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(w, np.round(hull).astype(np.int32), 1.0, cv2.LINE_AA)
    # Grow by the seam's width first, so the whole outline (where mask edges sit) is fully
    # restored and the seam falls just outside it.
    r = round(1.5 * FEATHER * size)
    w = cv2.dilate(w, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    w = cv2.GaussianBlur(w, (0, 0), FEATHER * size)
    return w * keep_eyes(points, size) * edge_fade(size)


def keep_eyes(points: np.ndarray, size: int) -> np.ndarray:
    """0 on the eyes (grown by EYE_MARGIN), rising to 1 within a few pixels around them: the
    bridge is level with the lower eyelids on many faces, and the eyes must keep the photo's
    own pixels. The rise is short because real masks' top edges (a hem, a lining, the nose
    wire) sit just under the lids: a guard twice as wide blended them in by half, a line under
    the eyes on many real photos."""
    eyes = np.zeros((size, size), np.float32)
    for eye in (LEFT_EYE, RIGHT_EYE):
        ring = cv2.convexHull(points[list(eye), :2].astype(np.float32))
        cv2.fillConvexPoly(eyes, np.round(ring).astype(np.int32), 1.0, cv2.LINE_AA)
    k = 2 * round(EYE_MARGIN * size) + 1
    core = cv2.dilate(eyes, np.ones((k, k), np.uint8))  # weight exactly 0 here
    soft = cv2.GaussianBlur(cv2.dilate(core, np.ones((k, k), np.uint8)), (0, 0), k / 3)
    return 1 - np.maximum(core, np.clip(soft, 0, 1))


def edge_fade(size: int) -> np.ndarray:
    """1 inside, falling linearly to 0 at the crop's border: the crop's own edge never shows."""
    r = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / (EDGE_FADE * size)
    r = np.clip(r, 0, 1).astype(np.float32)
    return np.minimum(r[:, None], r[None, :])


def restore_faces(rgb: np.ndarray, faces: list[np.ndarray], predictor: Predictor,
                  composite: bool = False, skin_tone: bool = True
                  ) -> tuple[np.ndarray, list[dict]]:
    """Restore the faces whose landmarks are ``faces`` in an RGB photo; returns the new photo
    and, per face, its crop, restored crop, weight, alignment matrix and how many photo pixels
    it changed (0: no mask found, the face left as it was). With ``skin_tone``, a restored
    region the model painted in no skin colour takes the face's own
    (:func:`.skin_tone.match_skin_tone`)."""
    size = predictor.image_size
    crops, ms, pts = [], [], []
    for p in faces:
        c, m, q = align_face(rgb, p, size, border="grey")
        crops.append(c)
        ms.append(m)
        pts.append(q)
    if not crops:
        return rgb.copy(), []
    restored, found = predictor.restore_and_find(np.stack(crops))
    restored = np.stack([keep_grey(c, r) for c, r in zip(crops, restored, strict=True)])
    out = rgb
    info = []
    for i, (c, r, m, q) in enumerate(zip(crops, restored, ms, pts, strict=True)):
        w = _blend_weight(c, r, q, size, None if found is None else found[i], composite)
        changed = 0
        if w.max() > 0:
            if skin_tone:
                r = match_skin_tone(c, r, w)
            before = out
            out = paste_back(out, r, m, w)
            # Only the crop's footprint can change: compare there, not the whole photo.
            x0, y0, x1, y1 = crop_footprint(out.shape, m, size)
            changed = int(np.count_nonzero(
                (out[y0:y1, x0:x1] != before[y0:y1, x0:x1]).any(axis=-1)))
        info.append({"crop": c, "restored": r, "weight": w, "alignment": m,
                     "pixels_changed": changed})
    return out, info


def keep_grey(crop: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """``restored`` made grey when ``crop`` is (uint8 RGB): a grey photo has no colour to
    restore, and a model trained mostly on colour faces tints the face it paints into one."""
    spread = crop.max(axis=-1).astype(np.int16) - crop.min(axis=-1)
    if np.percentile(spread, 99) > GREY_SPREAD:
        return restored
    return np.repeat(cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)


def _blend_weight(crop: np.ndarray, restored: np.ndarray, points: np.ndarray, size: int,
                  found: np.ndarray | None, composite: bool) -> np.ndarray:
    """Where a restored crop goes back into the photo (crop-sized floats in [0, 1])."""
    guard = keep_eyes(points, size) * edge_fade(size)
    if found is not None:  # the model's own mask, grown and feathered (none if too small)
        prob = torch.from_numpy(found)[None, None]
        return predicted_mask_weight(prob)[0, 0].numpy() * guard
    t = torch.from_numpy(np.stack([crop, restored])).permute(0, 3, 1, 2).float() / 255
    changed = change_mask(t[:1], t[1:])[0, 0].numpy() * guard
    # Composite: only what the model changed. Default: the lower face, and also whatever
    # the model changed beyond it (a mask's top edge over the bridge, its straps).
    return changed if composite else np.maximum(face_weight(points, size), changed)


@dataclass
class PhotoResult:
    source: str
    output: str
    status: str  # "restored", "no-mask", "no-face", "unreadable" or "error"
    faces_found: int = 0
    faces_restored: int = 0  # faces whose blend changed pixels
    faces_no_mask: int = 0  # faces the model found no mask on (left as they were)
    pixels_changed: int = 0
    seconds: float = 0.0
    reason: str = ""
    faces: list[dict] = field(default_factory=list)
    size: list[int] = field(default_factory=list)  # width, height worked on and written


def find_photos(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched for images as ``generate`` searches a folder source."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += [p / r for r in image_files(p)] if p.is_dir() else [p]
    return out


def _out_name(path: Path, taken: set[str], out: Path, inputs: set[Path]) -> str:
    """A name for a photo's results in ``out``: its stem, numbered when another photo took it
    or when a file it would write (``NAME.png``, or ``NAME`` + its own suffix when passed
    through) is one of the inputs, so an input is never written over."""
    stem = path.stem
    name, n = stem, 1

    def clobbers(name: str) -> bool:
        return any((out / f"{name}{ext}").resolve() in inputs
                   for ext in (".png", path.suffix.lower() or ".bin"))

    while name in taken or clobbers(name):
        n += 1
        name = f"{stem}-{n}"
    if n > 1 and clobbers(stem):
        log.warning("%s: results written as %s: %s/%s.* would overwrite an input", path, name,
                    out, stem)
    taken.add(name)
    return name


class UnmaskError(ValueError):
    """The run as a whole cannot go on (e.g. the output folder would overwrite inputs)."""


# Photos are decoded up to this side (decode_image's default cap is for training crops);
# a larger photo is worked on reduced, and its result says so.
MAX_PHOTO_SIDE = 16384


def _check_output(paths: list[Path], out: Path) -> None:
    """Refuse an output folder that is an input folder or inside one: results would
    overwrite the photos, or be picked up as photos by the next run."""
    o = out.resolve()
    for p in paths:
        p = p.resolve()
        if p.is_dir() and (o == p or p in o.parents):
            raise UnmaskError(f"--out {out} is inside the input folder {p}; choose another")


def unmask_files(paths: Iterable[str | Path], predictor: Predictor, out: str | Path, *,
                 max_faces: int | None = None, composite: bool = False,
                 side_by_side: bool = False, sheet_max: int = 240, skin_tone: bool = True,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Unmask photos into ``out``: ``NAME.png`` per photo (the original bytes when no face is
    found or the file does not decode), ``compare/NAME.jpg`` (before | after) with
    ``side_by_side``, ``summary.json`` and contact sheets ``sheets/sheet-NN.jpg`` (before |
    after, 24 photos a page, the first ``sheet_max`` photos). A photo that fails in any other
    way is recorded with status ``error`` and copied unchanged; the run goes on."""
    if max_faces is not None and max_faces < 1:
        raise UnmaskError(f"max_faces must be at least 1, got {max_faces}")
    out = Path(out)
    inputs = [Path(p) for p in paths]
    _check_output(inputs, out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[PhotoResult] = []
    sheet: list[np.ndarray] = []
    taken: set[str] = set()
    photos = find_photos(inputs)
    originals = {p.resolve() for p in photos}
    earlier = _earlier_outputs(out)
    opinion = mask_opinion(predictor)  # the mask head's say on faces the cascade doubts
    for path in photos:
        t = time.perf_counter()
        name = _out_name(path, taken, out, originals)
        res = _unmask_one(path, out, name, predictor, opinion, max_faces, composite,
                          side_by_side, sheet if len(sheet) < sheet_max else None, skin_tone)
        res.seconds = round(time.perf_counter() - t, 3)
        results.append(res)
        if progress is not None:
            progress(1)
    # An earlier run's pages would read as this run's: they go (never a photo given as input).
    for old in (out / "sheets").glob("sheet-*.jpg"):
        if old.resolve() not in originals:
            old.unlink()
    if sheet:
        (out / "sheets").mkdir(exist_ok=True)
    for page, start in enumerate(range(0, len(sheet), SHEET_PAGE)):
        cv2.imwrite(str(out / "sheets" / f"sheet-{page + 1:02d}.jpg"),
                    cv2.cvtColor(_page(sheet[start:start + SHEET_PAGE]), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    done = [r for r in results if r.status == "restored"]
    summary = {
        "photos": len(results), "photos_restored": len(done),
        "no_mask": sum(r.status == "no-mask" for r in results),
        "no_face": sum(r.status == "no-face" for r in results),
        "unreadable": sum(r.status == "unreadable" for r in results),
        "errors": sum(r.status == "error" for r in results),
        "faces_found": sum(r.faces_found for r in results),
        "faces_restored": sum(r.faces_restored for r in results),
        "faces_no_mask": sum(r.faces_no_mask for r in results),
        "pixels_changed": sum(r.pixels_changed for r in results),
        "seconds_per_photo": round(float(np.mean([r.seconds for r in results])), 3)
        if results else None,
        "model": predictor.label, "device": str(predictor.device),
        "blend": ("the model's mask" if predictor.has_mask_head
                  else "what the model changed" if composite else "the lower face"),
        "skin_tone": skin_tone,
        "earlier_outputs": sorted(earlier - {r.output for r in results}),
        "results": [r.__dict__ for r in results]}
    if summary["earlier_outputs"]:
        log.warning("%s: %d file(s) of an earlier run are still there (not this run's; listed "
                    "in summary.json as earlier_outputs)", out, len(summary["earlier_outputs"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _earlier_outputs(out: Path) -> set[str]:
    """The photos earlier runs wrote into ``out`` that are still there: the last run's results
    and what it listed as earlier than itself (from its summary.json), so a later run into the
    same folder never passes them off as its own, however many runs ago they were written."""
    try:
        last = json.loads((out / "summary.json").read_text())
        named = [r.get("output") for r in last["results"] if isinstance(r, dict)]
        named += list(last.get("earlier_outputs", []))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {p for p in named if isinstance(p, str) and p and Path(p).is_file()}


def _unmask_one(path: Path, out: Path, name: str, predictor: Predictor,
                opinion: MaskOpinion | None, max_faces: int | None, composite: bool,
                side_by_side: bool,
                sheet: list[np.ndarray] | None, skin_tone: bool = True) -> PhotoResult:
    try:
        rgb = decode_image(path.read_bytes(), max_side=MAX_PHOTO_SIDE)
    except (OSError, BadImage) as e:
        reason = str(e) if isinstance(e, BadImage) else f"{type(e).__name__}: {e}"
        log.warning("%s: unreadable (%s), copied unchanged", path, reason)
        return _pass_through(path, out, name, "unreadable", reason)
    try:
        dets = detect_faces(rgb, max_faces=max_faces, mask_opinion=opinion)
    except NoFace as e:
        log.warning("%s: no face found (%s); copied unchanged", path, e)
        if sheet is not None:
            sheet.append(_sheet_tile(rgb, rgb, label=path.name))
        return _pass_through(path, out, name, "no-face", str(e))
    try:
        restored, faces = restore_faces(rgb, [d.points for d in dets], predictor, composite,
                                        skin_tone)
        changed = sum(f["pixels_changed"] for f in faces)
        face_info = [{"eyes_mouth": _anchors(d.points), "pixels_changed": f["pixels_changed"],
                      "status": "restored" if f["pixels_changed"] else "no mask found",
                      "score": round(d.score, 3), "kept_on": dict(d.evidence)}
                     for d, f in zip(dets, faces, strict=True)]
        log.info("%s: %d face(s), kept on %s", path, len(dets),
                 "; ".join(_kept_on(d) for d in dets))
        counts = {"faces_found": dets[0].faces_found,
                  "faces_restored": sum(f["pixels_changed"] > 0 for f in faces),
                  "faces_no_mask": sum(f["pixels_changed"] == 0 for f in faces)}
        if not changed:
            # No mask on any face: the photo's own bytes, as for a photo without a face.
            log.info("%s: no mask found on %d face(s); copied unchanged", path, len(faces))
            if sheet is not None:
                sheet.append(_sheet_tile(rgb, rgb, label=path.name))
            res = _pass_through(path, out, name, "no-mask", "no mask found on any face")
            res.__dict__.update(counts, faces=face_info,
                                size=[int(rgb.shape[1]), int(rgb.shape[0])])
            return res
        target = out / f"{name}.png"
        if not cv2.imwrite(str(target), cv2.cvtColor(restored, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {target}")
        if side_by_side:
            (out / "compare").mkdir(exist_ok=True)
            cv2.imwrite(str(out / "compare" / f"{name}.jpg"),
                        cv2.cvtColor(side_by_side_image(rgb, restored), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
    except (RuntimeError, OSError, ValueError, cv2.error) as e:  # e.g. out of GPU memory
        log.error("%s: failed (%s: %s); copied unchanged", path, type(e).__name__, e)
        return _pass_through(path, out, name, "error", f"{type(e).__name__}: {e}")
    if sheet is not None:
        sheet.append(_sheet_tile(rgb, restored, label=path.name))
    return PhotoResult(str(path), str(target), "restored", **counts, pixels_changed=changed,
                       faces=face_info, size=[int(rgb.shape[1]), int(rgb.shape[0])])


def _kept_on(det: Detection) -> str:
    """A face's evidence as one short line: ``presence 1.00, skin 0.93, ...``."""
    return ", ".join(f"{k} {v:.2f}" for k, v in det.evidence) or f"presence {det.score:.2f}"


def _anchors(points: np.ndarray) -> list[list[float]]:
    return np.round(anchor_points(points), 1).tolist()


def _pass_through(path: Path, out: Path, name: str, status: str, reason: str) -> PhotoResult:
    """Copy the photo's own bytes: nothing is re-encoded or lost."""
    target = out / f"{name}{path.suffix.lower() or '.bin'}"
    try:
        shutil.copyfile(path, target)
    except OSError as e:
        reason += f"; could not copy ({e})"
        target = Path("")
    return PhotoResult(str(path), str(target), status, reason=reason)


def side_by_side_image(before: np.ndarray, after: np.ndarray, height: int = 512) -> np.ndarray:
    """Before | after at one height, with a thin white gap."""
    h, w = before.shape[:2]
    s = height / h
    size = (max(1, round(w * s)), height)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    a = cv2.resize(before, size, interpolation=interp)
    b = cv2.resize(after, size, interpolation=interp)
    return np.hstack([a, np.full((height, 6, 3), 255, np.uint8), b])


def _sheet_tile(before: np.ndarray, after: np.ndarray, height: int = 200,
                label: str = "") -> np.ndarray:
    """Before | after at one height, fitted into a fixed-size tile (4:3 a side), under a line
    naming the photo and the two halves."""
    pair = side_by_side_image(before, after, height)
    width = 2 * int(height * 4 / 3) + 6
    if pair.shape[1] > width:
        h = max(1, round(height * width / pair.shape[1]))
        pair = cv2.resize(pair, (width, h), interpolation=cv2.INTER_AREA)
    head = 16
    tile = np.full((head + height + 8, width + 8, 3), 255, np.uint8)
    half = (pair.shape[1] - 6) // 2
    for x, text in ((4, f"before {label}".strip()), (4 + half + 6, "after")):
        cv2.putText(tile, text[:40], (x, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                    cv2.LINE_AA)
    tile[head + 4:head + 4 + pair.shape[0], 4:4 + pair.shape[1]] = pair
    return tile


def _page(tiles: list[np.ndarray]) -> np.ndarray:
    rows = []
    for i in range(0, len(tiles), SHEET_COLUMNS):
        row = tiles[i:i + SHEET_COLUMNS]
        row += [np.full_like(tiles[0], 255)] * (SHEET_COLUMNS - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)
