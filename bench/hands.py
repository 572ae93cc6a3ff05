"""Hands near faces: how many faces have one, how many an occluder over the lower face, and
what looking for them costs a face (wall and CPU time), against finding the face's landmarks.

    python bench/hands.py [--src ../shared/data/celeba-wild] [--cache FILE] [--limit N]
                          [--check-glance]

Landmarks come from --cache (a `maskface generate` landmark cache; their time is then not
measured) or are detected here. CPU time is reported beside wall time: on a shared machine
whose load varies, the CPU time of the same work varies much less. Prints one JSON object
(``occluder_faces`` lists the faces whose hand would stay in front of their masks).
``--check-glance`` also runs the palm detector's full pass on every face, also where the glance
(see maskgen/hands.py) skipped it, and reports the faces whose hands or occluders differ and
the full pass's CPU time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from faces import add_source_options, faces_with_landmarks


def main() -> None:
    import cv2

    from maskface.maskgen.align import alignment_matrix, transform_points
    from maskface.maskgen.hands import GLANCE_SCORE, find_hands, get_hand_finder, hand_region
    from maskface.maskgen.occlusion import MIN_OCCLUDER_SCORE
    from maskface.maskgen.samples import hand_occluders

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_options(ap)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--check-glance", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as generate's workers
    times: dict[str, list[float]] = {"landmarks_ms": [], "landmarks_cpu_ms": [],
                                     "hands_ms": [], "hands_cpu_ms": []}
    faces = found = sure = glanced = 0
    occluders: list[str] = []
    other_hands: list[str] = []
    other_occluders: list[str] = []
    first = True
    for key, rgb, points in faces_with_landmarks(args, times):
        t, c = time.perf_counter(), time.process_time()
        hands = find_hands(rgb, points)
        if not first:  # the first call loads the two networks
            times["hands_ms"].append(1000 * (time.perf_counter() - t))
            times["hands_cpu_ms"].append(1000 * (time.process_time() - c))
        first = False
        faces += 1
        found += bool(hands)
        sure += any(s >= MIN_OCCLUDER_SCORE for _, s in hands)
        m = alignment_matrix(points, args.size)
        occ = hand_occluders(hands, m, transform_points(points, m), args.size)
        if occ:
            occluders.append(key)
        if args.check_glance:
            finder = get_hand_finder()
            glanced += finder.glance(rgb, points) >= GLANCE_SCORE
            t, c = time.perf_counter(), time.process_time()
            full = [h for h in (finder.hand(rgb, r) for r in finder.palms(rgb, hand_region(points)))
                    if h is not None]
            times.setdefault("full_pass_cpu_ms", []).append(1000 * (time.process_time() - c))
            if [round(h.score, 4) for h in full] != [s for _, s in hands]:
                other_hands.append(key)
            full_occ = hand_occluders(tuple((h.points.astype(np.float32), h.score) for h in full),
                                      m, transform_points(points, m), args.size)
            if [o.score for o in full_occ] != [o.score for o in occ]:
                other_occluders.append(key)
    print(json.dumps({
        "bench": "hands", "src": args.src, "limit": args.limit, "faces": faces,
        "faces_with_a_hand": found, "faces_with_a_sure_hand": sure,
        "faces_with_an_occluder": len(occluders),
        **{f"median_{k}": round(statistics.median(v), 2) for k, v in times.items() if v},
        **{f"mean_{k}": round(statistics.fmean(v), 2) for k, v in times.items() if v},
        "occluder_faces": occluders,
        **({"faces_glance_passed": glanced, "faces_with_other_hands_without_glance": other_hands,
            "faces_with_other_occluders_without_glance": other_occluders}
           if args.check_glance else {})}, indent=1))


if __name__ == "__main__":
    main()
