"""Read MaskTheFace-style template packs (``masks.cfg``), so existing packs work as they are.

A pack is an INI file whose sections are mask names, each with ``template`` (a PNG with an alpha
channel, path relative to the pack) and six points in that image, ``mask_a`` ... ``mask_f``:
a, b, c along the top edge (left cheek at the nose bridge's height, nose bridge, right cheek)
and d, e, f along the bottom (left jaw, chin, right jaw). Each becomes a template description
(what an ``assets/masks/*.json`` file holds, which :func:`.templates.registry` turns into a
``Template``) whose 2x3 grid is anchored on the FaceMesh landmarks nearest to MaskTheFace's dlib
points, with the image as its texture (its own colours, not recoloured). This module knows the
pack format only, not the Template class, so the two do not import each other.
"""

from __future__ import annotations

import configparser
from pathlib import Path

# FaceMesh stand-ins for the dlib points MaskTheFace pins its six template points to.
ANCHORS = {"mask_a": "234*0.7 + 93*0.3", "mask_b": "197*0.5 + 6*0.5",
           "mask_c": "454*0.7 + 323*0.3", "mask_d": "172*0.5 + 136*0.5",
           "mask_e": "152 @ 0,0.05", "mask_f": "397*0.5 + 365*0.5"}


def _resolve(cfg_path: Path, ref: str) -> Path:
    """Packs name images relative to the pack, its parent (MaskTheFace's repository root), or
    a ``templates/`` folder beside it."""
    ref_path = Path(ref)
    for cand in (cfg_path.parent / ref_path, cfg_path.parent.parent / ref_path,
                 cfg_path.parent / "templates" / ref_path.name, cfg_path.parent / ref_path.name):
        if cand.is_file():
            return cand.resolve()
    raise ValueError(f"{cfg_path}: template image {ref!r} not found")


def _point(text: str, where: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"{where}: expected 'x,y', got {text!r}")
    return float(parts[0]), float(parts[1])


def read_masks_cfg(path: str | Path) -> list[tuple[str, dict]]:
    """Every mask of a ``masks.cfg`` pack as ``(where, description)``: ``where`` names the pack
    and section (for error messages), ``description`` is the template's JSON form, named after
    its section (lower case; characters other than letters, digits and '-' become '-')."""
    import cv2

    path = Path(path)
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
    except configparser.Error as e:
        raise ValueError(f"{path}: not a masks.cfg INI file ({e})") from e
    out = []
    for section in parser.sections():
        s = parser[section]
        where = f"{path} [{section}]"
        missing = [k for k in ("template", *ANCHORS) if k not in s]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        image = _resolve(path, s["template"])
        img = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 3 or img.shape[2] != 4:
            raise ValueError(f"{where}: {image} must be a PNG with an alpha channel")
        h, w = img.shape[:2]
        pts = {k: _point(s[k], where) for k in ANCHORS}
        uv = [[[pts[k][0] / (w - 1), pts[k][1] / (h - 1)] for k in row]
              for row in (("mask_a", "mask_b", "mask_c"), ("mask_d", "mask_e", "mask_f"))]
        name = "".join(c if c.isalnum() or c == "-" else "-" for c in section.lower())
        d = {"name": name, "description": f"MaskTheFace template {section} from {path.name}",
             "grid": {"u": [0.0, 0.5, 1.0], "v": [0.0, 1.0], "uv": uv,
                      "anchors": [[ANCHORS[k] for k in ("mask_a", "mask_b", "mask_c")],
                                  [ANCHORS[k] for k in ("mask_d", "mask_e", "mask_f")]]},
             "texture": {"style": "image", "image": str(image), "aspect": w / h,
                         "outline": [[0, 0], [1, 0], [1, 1], [0, 1]]},
             "palette": ["#ffffff"], "loops": "none"}
        out.append((where, d))
    return out
