"""A face's samples: which mask types it wears, how, in which colours, and which ones count.

:func:`face_samples` is the one place that decides this. ``generate`` writes the samples it
accepts and records the others in ``failures.jsonl``, ``preview`` shows every sample (the refused
ones dimmed, with their reason) and ``bench/placement.py`` measures them, so the three cannot
disagree. Every random choice comes from (seed, source key, type), so a sample is the same bytes
whichever tool makes it and whatever else is made beside it.

A sample is refused (``Sample.reason``) when the head is turned further than its type allows
(``turned-too-far``), when the mask cannot be drawn on the crop (a ``RenderError``), or when the
drawn mask fails the placement check for its wear style (``placement.Placement.problem``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from .align import align_face, frame_cut_row, grey_below, transform_points
from .crops import crop_matrix, crop_side
from .hair import find_hair
from .occlusion import MIN_OCCLUDER_SCORE, hand_cover, in_front, lower_face
from .pose import head_pose
from .render import FaceContext, Rendered, RenderError, prepare_face, render_mask
from .templates import Template, registry


@dataclass(frozen=True)
class SampleRules:
    """Everything that decides a face's samples besides the face itself."""

    types: tuple[str, ...]  # the mask types to choose from, in registry order
    seed: int = 0
    per_face: str = "all"  # mask types per face: "all" or a number (drawn per face)
    # Wear styles with their probabilities (summing to 1), drawn per face and type.
    wear: Mapping[str, float] = field(default_factory=lambda: {"proper": 1.0})
    # Share of faces whose photo is cut off between the lower lip and the chin.
    frame_cut: float = 0.0
    templates: tuple[str, ...] = ()  # extra template directories
    # The crop faces are aligned to (see crops): "default" at the given side, or "arcfaceN".
    crop: str = "default"
    # Look for hair over the cheeks (see hair) and keep it in front of the masks.
    hair: bool = False


@dataclass(frozen=True)
class MaskableFace:
    """One face aligned for masks, with what all its samples share."""

    key: str  # the source's key: with the seed, it decides every random choice
    crop: np.ndarray  # (S, S, 3) uint8 RGB, aligned; before any frame cut
    points: np.ndarray  # (478, 3) landmarks in the crop's pixels
    matrix: np.ndarray  # 2x3 alignment: source pixels -> crop pixels
    pose: dict[str, float]  # head pose (yaw, pitch, roll) from the source's landmarks
    source_scale: float  # how much alignment enlarged the source
    cut: int | None  # the crop row where the photo ends (see SampleRules.frame_cut), or None
    context: FaceContext  # light, exposure and grain, measured once for every mask
    # What lies in front of the lower face (hands, hair), each drawn in front of every mask.
    occluders: tuple[Occluder, ...] = ()

    def framed(self, img: np.ndarray) -> np.ndarray:
        """``img`` (the crop, a masked crop or a mask) as written: cut off at :attr:`cut`, the
        rows below flat grey as ``unmask`` shows a model a photo's end (:func:`.align.grey_below`),
        when this face has a frame cut. (They used to mirror the rows above: a ghost of the
        mouth, upside down under the mask, which ``unmask`` no longer shows a model.)"""
        return img if self.cut is None else grey_below(img, self.cut)


@dataclass(frozen=True)
class Occluder:
    """Something in front of the face: its ``kind`` ("hand" or "hair"), the detector's
    ``score`` (for hair, the colour models' separation, see :class:`.hair.Hair`), and
    ``cover``, how much of each crop pixel it covers ((S, S) float32 in [0, 1])."""

    kind: str
    score: float
    cover: np.ndarray


@dataclass(frozen=True)
class Sample:
    """One mask type on one face. ``rendered`` is None when the sample was refused before it
    was drawn (turned too far) or could not be drawn; ``reason`` is why ``generate`` does not
    write it ("" when it does), ``detail`` what was measured."""

    type: str
    wear: str
    rendered: Rendered | None
    reason: str = ""
    detail: str = ""


def maskable_face(rgb: np.ndarray, points: np.ndarray, size: int, key: str,
                  rules: SampleRules, hands: tuple[tuple[np.ndarray, float], ...] = ()
                  ) -> MaskableFace:
    """Align the face whose landmarks in ``rgb`` are ``points`` to the crop of
    ``rules.crop`` (``size`` is the default crop's side) and measure what its samples share.
    Masks are drawn on the whole face and cut with it afterwards
    (:meth:`MaskableFace.framed`): a real mask at the frame's edge is cut just the same.
    ``hands``: the hands found near the face (21 points in ``rgb``'s pixels, and the hand
    model's score); those sure enough and over the lower face become its occluders, and so
    does hair over the cheeks with ``rules.hair``."""
    # Beyond the photo's edge the crop is smeared, not mirrored: a mirror shows a second half
    # of the face there, upside down below a chin the photo cuts off, which no real photo has.
    crop, m, pts = align_face(rgb, points, crop_side(rules.crop, size),
                              crop_matrix(points, rules.crop, size), border="smear")
    occluders = hand_occluders(hands, m, pts, crop.shape[0])
    if rules.hair:
        occluders += hair_occluders(crop, pts)
    return MaskableFace(key, crop, pts, m, head_pose(points),
                        float(np.sqrt(abs(np.linalg.det(m[:, :2])))),
                        choose_frame_cut(key, rules.seed, rules.frame_cut, pts),
                        prepare_face(crop, pts), occluders)


def hand_occluders(hands: tuple[tuple[np.ndarray, float], ...], m: np.ndarray,
                   points: np.ndarray, size: int) -> tuple[Occluder, ...]:
    """The hands (points in source pixels, score) that lie over the lower face of a ``size``
    crop whose alignment is ``m`` and landmarks ``points``, as occluders."""
    out = []
    lower = None
    for hand_points, score in hands:
        if score < MIN_OCCLUDER_SCORE:
            continue
        cover = hand_cover(transform_points(hand_points, m), (size, size))
        if lower is None:
            lower = lower_face(points, (size, size))
        if (cover[lower] >= 0.5).any():
            out.append(Occluder("hand", round(float(score), 3), cover))
    return tuple(out)


def hair_occluders(crop: np.ndarray, points: np.ndarray) -> tuple[Occluder, ...]:
    """The hair over the cheeks of an aligned ``crop`` with landmarks ``points``, as an
    occluder (none where it cannot be told reliably)."""
    hair = find_hair(crop, points)
    return () if hair is None else (Occluder("hair", hair.separation, hair.cover),)


def face_samples(face: MaskableFace, rules: SampleRules) -> Iterator[Sample]:
    """The face's samples, one per mask type it gets (:func:`choose_types`), in type order:
    accepted ones and refused ones alike."""
    templates = registry(rules.templates)
    for name in choose_types(face.key, rules.seed, list(rules.types), rules.per_face):
        yield _sample(face, templates[name], rules)


def _sample(face: MaskableFace, template: Template, rules: SampleRules) -> Sample:
    name = template.name
    wear = choose_wear(face.key, rules.seed, name, rules.wear)
    yaw = face.pose["yaw"]
    if abs(yaw) > template.max_yaw:
        return Sample(name, wear, None, "turned-too-far",
                      f"yaw {yaw:.0f} degrees, this type allows {template.max_yaw:.0f}")
    rng = np.random.default_rng(sample_seed(rules.seed, face.key, name))
    try:
        r = render_mask(face.crop, face.points, template, rng, source_scale=face.source_scale,
                        context=face.context, wear=wear)
    except RenderError as e:
        return Sample(name, wear, None, e.reason, e.detail)
    if face.occluders:
        r = _behind(r, face)
    # The geometry is deterministic per face and type: drawing again would place the mask the
    # same way, so a misplaced sample is refused, not redrawn.
    problem = r.placement.problem(wear, template.on_face)
    if problem:
        return Sample(name, wear, r, problem, json.dumps(r.placement.as_dict()))
    return Sample(name, wear, r)


def _behind(r: Rendered, face: MaskableFace) -> Rendered:
    """``r`` with the face's occluders in front of the mask, and in its metadata what they hid
    (the placement stays the drawn mask's: a hand in front of a mask does not move it)."""
    masked, mask, found = r.masked, r.mask, []
    for occ in face.occluders:
        masked, mask, hidden = in_front(masked, mask, face.crop, occ.cover)
        if hidden:
            found.append({"kind": occ.kind, "score": occ.score, "hides": "mask",
                          "pixels": hidden})
    if not found:
        return r
    meta = {**r.meta, "coverage": round(float(np.count_nonzero(mask)) / mask.size, 5),
            "occluded_by": found}
    return Rendered(masked, mask, meta, r.placement)


def sample_seed(*parts: object) -> int:
    """A stable 64-bit integer from any strings/ints (Python's hash() is salted per process):
    the seed of each sample's randomness, from (global seed, source key, type)."""
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def choose_types(key: str, seed: int, type_names: list[str], per_face: str) -> list[str]:
    """Which mask types a face gets: all of them, or ``per_face`` drawn from (seed, key)."""
    if per_face == "all" or int(per_face) >= len(type_names):
        return list(type_names)
    rng = np.random.default_rng(sample_seed(seed, key, "types"))
    pick = rng.choice(len(type_names), size=int(per_face), replace=False)
    return [type_names[i] for i in sorted(pick)]


def choose_wear(key: str, seed: int, mask_type: str, probs: Mapping[str, float]) -> str:
    """The wear style of one sample, drawn from (seed, key, type)."""
    if len(probs) == 1:
        return next(iter(probs))
    rng = np.random.default_rng(sample_seed(seed, key, mask_type, "wear"))
    names = sorted(probs)
    return names[int(rng.choice(len(names), p=[probs[n] for n in names]))]


def choose_frame_cut(key: str, seed: int, share: float, points: np.ndarray) -> int | None:
    """The crop row where this face's photo is cut off (a ``share`` of faces are), or None;
    drawn from (seed, key). ``points`` are the crop's landmarks."""
    if share <= 0:
        return None
    rng = np.random.default_rng(sample_seed(seed, key, "frame-cut"))
    if rng.random() >= share:
        return None
    return frame_cut_row(points, float(rng.uniform(0.3, 1.0)))
