"""Placement checks over real faces x every mask type, from landmarks alone.

    python bench/placement.py [--src ../shared/data/celeba-wild] [--cache FILE] [--limit N]
                              [--crop default|arcface112|...]

For each face and type: are the mouth and nostrils covered, are both eyes free, and how much of
the mask lies outside the face outline (types that may hang lower, bandana and neck gaiter, are
reported but not held to it). Faces turned further than a type allows, and masks that cannot be
drawn, are counted separately. The samples are generate's own (`maskgen.samples.face_samples`,
proper wear, seed 0). Landmarks come from --cache (a `maskface generate` landmark cache) or are
detected. Also times rendering per type. With an ``arcfaceN`` crop (masks rendered on the
recognition crop's geometry), also how far the five fitted points land from the template
(``template_residual_px``: per point and over all, in the crop's pixels). Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np
from faces import add_source_options, faces_with_landmarks


def main() -> None:
    from maskface.maskgen.crops import parse_crop, template_residual
    from maskface.maskgen.samples import SampleRules, face_samples, maskable_face
    from maskface.maskgen.templates import registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_options(ap)
    ap.add_argument("--crop", default="default")
    args = ap.parse_args()
    template = parse_crop(args.crop) is not None
    reg = registry()
    # generate's samples with every type and proper wear (SampleRules' default).
    rules = SampleRules(tuple(reg), crop=args.crop)
    residuals = []
    stats: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    faces = 0
    for key, rgb, pts0 in faces_with_landmarks(args):
        faces += 1
        face = maskable_face(rgb, pts0, 256, key, rules)
        if template:
            residuals.append(template_residual(pts0, args.crop, 256))
        t0 = time.perf_counter()
        for sample in face_samples(face, rules):
            s = stats[sample.type]
            if sample.reason == "turned-too-far":
                s["turned"].append(1)
            elif sample.rendered is None:
                s["not_drawn"].append(1)
            else:
                s["ms"].append(1000 * (time.perf_counter() - t0))
                p = sample.rendered.placement
                s["mouth_nostrils"].append(p.mouth_covered and p.nostrils_covered)
                s["eyes_free"].append(p.eyes_free)
                s["off_face"].append(p.off_face)
            t0 = time.perf_counter()
    def med(x: list) -> float | None:
        return round(float(np.median(x)), 4) if len(x) else None

    def share(x: list) -> float | None:
        return round(float(np.mean(x)), 4) if len(x) else None

    per_type = {}
    for name, s in stats.items():
        rendered = len(s["ms"])
        per_type[name] = {
            "rendered": rendered, "turned_too_far": len(s["turned"]),
            "not_drawn": len(s["not_drawn"]),
            "mouth_and_nostrils_covered": share(s["mouth_nostrils"]),
            "eyes_free": share(s["eyes_free"]),
            "off_face_median": med(s["off_face"]),
            "off_face_p95": round(float(np.percentile(s["off_face"], 95)), 4)
            if rendered else None,
            "held_to_face": reg[name].on_face,
            "render_ms_median": med(s["ms"]),
        }
    if not any(len(s["ms"]) for s in stats.values()):
        sys.exit(f"no face rendered from {args.src}")
    all_mn = np.concatenate([stats[n]["mouth_nostrils"] for n in stats])
    all_eyes = np.concatenate([stats[n]["eyes_free"] for n in stats])
    on_face = np.concatenate([stats[n]["off_face"] for n in stats if reg[n].on_face] or [[0.0]])
    extra = {}
    if template:
        r = np.array(residuals)
        extra["template_residual_px"] = {
            "points": ["left eye", "right eye", "nose tip", "left mouth", "right mouth"],
            "mean_per_point": np.round(r.mean(0), 3).tolist(),
            "mean": round(float(r.mean()), 3), "median": round(float(np.median(r)), 3),
            "p95": round(float(np.percentile(r, 95)), 3), "max": round(float(r.max()), 3)}
    print(json.dumps({
        "bench": "placement", "src": args.src, "crop": args.crop, **extra,
        "faces": faces, "types": len(reg),
        "samples": int(len(all_mn)),
        "mouth_and_nostrils_covered": round(float(all_mn.mean()), 4),
        "eyes_free": round(float(all_eyes.mean()), 4),
        "off_face_median_on_face_types": round(float(np.median(on_face)), 4),
        "off_face_p95_on_face_types": round(float(np.percentile(on_face, 95)), 4),
        "per_type": per_type}, indent=1))


if __name__ == "__main__":
    main()
