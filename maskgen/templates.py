"""Mask templates: data in ``assets/masks/*.json``, looked up by name in one registry.

A template is a grid of control points. Each grid node has a place in texture space (``u`` and
``v`` in [0, 1]) and an *anchor* on the face: a weighted mix of FaceMesh landmarks plus an offset
in face units (inter-ocular distance, in the face's own frame). The renderer warps the texture
over the triangles of this grid, so the mask follows the jaw, cheeks and nose as the head turns.

Anchor syntax (hand-writable): ``"152"``, ``"234*0.6 + 93*0.4"``, ``"152 @ 0,0.12"`` (landmark 152
moved 0.12 inter-ocular distances down the face).

The texture itself is drawn procedurally from the ``texture`` block (outline polygon, style,
palette), so every pixel of our art is our own and any resolution is available.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "masks"

# How far each wear style slides the mask down the face, in template rows: "nose-exposed" puts
# the top edge under the nose, "under-chin" under the lower lip (templates share a row layout:
# top edge, nose, mouth, chin). A template may override these (``wear_shift``). Kept here, not
# in warp, so that listing and checking templates does not import numba (~0.3 s a process).
WEAR_SHIFT = {"proper": 0.0, "nose-exposed": 1.3, "under-chin": 2.4}

_TERM = re.compile(r"^\s*(\d+)\s*(?:\*\s*([0-9.]+))?\s*$")


@dataclass(frozen=True)
class Anchor:
    """A face point: ``sum(w_i * landmark_i) + offset`` (offset in face units, face frame)."""

    indices: tuple[int, ...]
    weights: tuple[float, ...]
    offset: tuple[float, float] = (0.0, 0.0)


def parse_anchor(text: str) -> Anchor:
    """Parse ``"234*0.6 + 93*0.4 @ 0,0.1"`` into an :class:`Anchor`."""
    body, _, off = text.partition("@")
    idx, w = [], []
    for term in body.split("+"):
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"bad anchor term {term!r} in {text!r}")
        idx.append(int(m.group(1)))
        w.append(float(m.group(2)) if m.group(2) else float("nan"))
    if any(np.isnan(w)):
        if not all(np.isnan(w)):
            raise ValueError(f"anchor {text!r}: give weights to all terms or to none")
        w = [1.0 / len(idx)] * len(idx)
    total = sum(w)
    if total <= 0 or max(idx) >= 478:
        raise ValueError(f"anchor {text!r}: weights must sum > 0 and indices be < 478")
    offset = (0.0, 0.0)
    if off.strip():
        parts = [float(p) for p in off.split(",")]
        if len(parts) != 2:
            raise ValueError(f"anchor {text!r}: offset needs 'dx,dy'")
        offset = (parts[0], parts[1])
    return Anchor(tuple(idx), tuple(x / total for x in w), offset)


@dataclass(frozen=True)
class Part:
    """One rigid part of a template (its JSON ``parts`` entry). Lengths are in eye distances,
    angles in degrees."""

    at: Anchor  # the centre of its base, on the face (before ``standoff``)
    radius: float
    length: float
    out: float = 0.0  # the axis turned sideways, away from the face's middle
    down: float = 0.0  # the axis tilted down the face
    standoff: float = 0.0  # the base's distance in front of the anchor (the mask's thickness)
    face: str = "grille"  # its front cap: "grille" (rings), "slots" or "plain"
    colour: str = "feature"  # "feature": the template's feature colour, "body": the mask's


def part_from_dict(d: dict) -> Part:
    """A :class:`Part` from its JSON object (``"shape": "cylinder"``, the only shape)."""
    if d.get("shape", "cylinder") != "cylinder":
        raise ValueError(f"part shape {d.get('shape')!r}: only 'cylinder' is known")
    p = Part(parse_anchor(d["at"]), float(d["radius"]), float(d["length"]),
             float(d.get("out", 0.0)), float(d.get("down", 0.0)),
             float(d.get("standoff", 0.0)), str(d.get("face", "grille")),
             str(d.get("colour", "feature")))
    if p.radius <= 0 or p.length <= 0:
        raise ValueError("part radius and length must be > 0")
    if p.face not in ("grille", "slots", "plain") or p.colour not in ("feature", "body"):
        raise ValueError("part face must be grille, slots or plain; colour feature or body")
    return p


@dataclass(frozen=True)
class Texture:
    """How the texture is drawn: outline in (u, v), a style and its parameters."""

    style: str
    outline: tuple[tuple[float, float], ...]
    aspect: float = 1.6  # texture width / height, so patterns are not stretched
    params_json: str = "{}"  # style parameters, as canonical JSON so textures hash by value

    @cached_property  # parsed once: rendering reads it for every mask
    def params(self) -> dict:
        return json.loads(self.params_json)


@dataclass(frozen=True)
class Template:
    """One mask type, as loaded from its JSON asset."""

    name: str
    description: str
    u: tuple[float, ...]
    v: tuple[float, ...]
    anchors: tuple[tuple[Anchor, ...], ...]  # rows (len v) x columns (len u)
    texture: Texture
    palette: tuple[tuple[int, int, int], ...]
    patterns: tuple[str, ...] = ("plain",)
    loops: str = "none"  # "ear" loops, "head" straps, or "none"
    source: str = ""
    feature_palette: tuple[tuple[int, int, int], ...] = ()  # colours of valves, cartridges
    on_face: bool = True  # False for types that may hang below the face (bandana, gaiter)
    max_yaw: float = 60.0  # faces turned further (degrees) are recorded, not rendered
    uv_nodes: tuple | None = None  # per-node (u, v), rows x columns; overrides u and v
    wear_shift: tuple[tuple[str, float], ...] = ()  # per-type overrides of WEAR_SHIFT
    # How often each palette colour is drawn, relative (empty: all alike), so a type's colours
    # come in the proportions real masks show (black and white surgical masks outnumber pink).
    palette_weights: tuple[float, ...] = ()
    # Rigid parts drawn as shaded solids in front of the warped mask (see parts.py).
    parts: tuple[Part, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.v), len(self.u)


def template_from_dict(d: dict, source: str = "") -> Template:
    """Build a :class:`Template` from its JSON structure, checking it thoroughly."""
    where = source or d.get("name", "?")
    try:
        u = tuple(float(x) for x in d["grid"]["u"])
        v = tuple(float(x) for x in d["grid"]["v"])
        rows = d["grid"]["anchors"]
        if len(rows) != len(v) or any(len(r) != len(u) for r in rows):
            raise ValueError(f"anchors must be {len(v)} rows of {len(u)}")
        if list(u) != sorted(u) or list(v) != sorted(v):
            raise ValueError("grid u and v must increase")
        anchors = tuple(tuple(parse_anchor(a) for a in r) for r in rows)
        t = d["texture"]
        params = {k: x for k, x in t.items() if k not in ("style", "outline", "aspect")}
        texture = Texture(t["style"], tuple((float(a), float(b)) for a, b in t["outline"]),
                          float(t.get("aspect", 1.6)), json.dumps(params, sort_keys=True))
        palette = tuple(tuple(int(c) for c in _hex(p)) for p in d["palette"])
        weights = tuple(float(x) for x in d.get("palette_weights", []))
        if weights and (len(weights) != len(palette) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError("palette_weights must be one weight >= 0 per palette colour, "
                             "not all zero")
        loops = d.get("loops", "none")
        if loops not in ("ear", "head", "none"):
            raise ValueError(f"loops must be 'ear', 'head' or 'none', got {loops!r}")
        features = tuple(tuple(int(c) for c in _hex(p)) for p in d.get("feature_palette", []))
        uv_nodes = None
        if "uv" in d["grid"]:
            uv_nodes = tuple(tuple((float(a), float(b)) for a, b in row)
                             for row in d["grid"]["uv"])
            if len(uv_nodes) != len(v) or any(len(r) != len(u) for r in uv_nodes):
                raise ValueError("grid uv must have the anchors' shape")
        unknown = set(d.get("wear_shift", {})) - set(WEAR_SHIFT)
        if unknown:  # a misspelt style would silently fall back to the default shift
            raise ValueError(f"wear_shift: unknown wear style(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(WEAR_SHIFT)}")
        return Template(d["name"], d.get("description", ""), u, v, anchors, texture, palette,
                        tuple(d.get("patterns", ["plain"])), loops, source, features,
                        bool(d.get("on_face", True)), float(d.get("max_yaw", 60.0)), uv_nodes,
                        tuple(sorted((str(k), float(x))
                                     for k, x in d.get("wear_shift", {}).items())), weights,
                        tuple(part_from_dict(x) for x in d.get("parts", [])))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"mask template {where}: {e}") from e


def _hex(text: str) -> tuple[int, int, int]:
    s = text.lstrip("#")
    if len(s) != 6:
        raise ValueError(f"colour {text!r} is not #rrggbb")
    return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)


def load_template(path: str | Path) -> Template:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"mask template {path}: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"mask template {path}: not a JSON object")
    return template_from_dict(d, str(path))


@lru_cache(maxsize=8)
def registry(extra_dirs: tuple[str, ...] = ()) -> dict[str, Template]:
    """All mask types by name: the built-in ones, then those in ``extra_dirs`` (which may
    override a built-in of the same name)."""
    out: dict[str, Template] = {}
    for d in (str(ASSETS_DIR), *extra_dirs):
        for p in sorted(Path(d).glob("*.json")):
            t = load_template(p)
            out[t.name] = t
        cfg = Path(d) / "masks.cfg"
        if cfg.is_file():  # a MaskTheFace template pack
            from .maskthefacecfg import read_masks_cfg

            for where, desc in read_masks_cfg(cfg):
                t = template_from_dict(desc, where)
                out[t.name] = t
    return out


def select_types(spec: str, extra_dirs: tuple[str, ...] = ()) -> list[str]:
    """``"all"`` or a comma list of names -> validated type names, in registry order."""
    reg = registry(extra_dirs)
    if spec.strip() == "all":
        return list(reg)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in reg]
    if unknown or not names:
        raise ValueError(f"unknown mask type(s) {', '.join(unknown) or spec!r}; "
                         f"known: {', '.join(reg)}")
    return list(dict.fromkeys(names))
