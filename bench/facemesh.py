"""Where the generator's detection time goes: MediaPipe's networks timed one by one.

    python bench/facemesh.py [--src ../shared/data/celeba-wild] [--limit 300] [--repeat 3]

On the first N images of a folder (decoded before timing, one process, models loaded and warmed
up first), prints one JSON object with milliseconds per image, each the best of --repeat passes
(this VM's speed drifts; the best pass is the least disturbed one; the passes of all the
measurements are interleaved, so a slow spell hits each alike):

- ``detect_landmarks``: the generator's whole detection step (FaceMesh, retries, checks),
  with FaceMesh on LiteRT (``..._litert``) and on MediaPipe (``..._mediapipe``), one picture
  at a time; ``detect_landmarks_many_litert``: the same, 64 pictures at a time as the
  generator runs it (the landmark model on MESH_BATCH faces at once);
- ``facemesh_litert``: one pass of FaceMesh's networks on LiteRT (maskgen/facemesh.py), one
  picture at a time, and ``facemesh_litert_many`` 64 at a time; its parts:
  ``litert_face_detector`` (short-range detector, decoding, suppression) and
  ``litert_landmarks_attention`` (crop, the split 478-point model, map back, one face);
- ``facemesh_graph``: one pass of MediaPipe's FaceMesh graph (short-range face detector, then
  the 478-point landmark model with attention), as the generator ran it before LiteRT;
- ``face_detector``: the short-range face detector alone (``FaceDetection.process``);
- ``landmarks_attention`` / ``landmarks_plain``: the 478-point and the plain 468-point landmark
  model alone, on the region FaceMesh's own tracking would use for the face;
- ``passthrough_graph``: a MediaPipe graph that only passes the image on (the fixed cost of
  feeding a graph from Python and waiting for it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-wild"
CHUNK = 64  # pictures detected together, as maskgen.pipeline.DETECT_CHUNK


def best_ms(fns: dict[str, Callable[[int], object]], n: int, repeat: int) -> dict[str, float]:
    """For each function, the best mean over ``repeat`` passes of ``fn(i)`` for i < n, in ms
    (after 10 warm-up calls). Passes are interleaved (one of each function, ``repeat`` times),
    so that a slow spell of the machine hits every measurement alike."""
    for fn in fns.values():
        for i in range(min(10, n)):
            fn(i)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], (time.perf_counter() - t) / n)
    return {name: round(1000 * v, 3) for name, v in best.items()}


def passthrough(images: list[np.ndarray]) -> Callable[[int], object]:
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    from mediapipe.python import packet_creator
    from mediapipe.python._framework_bindings import calculator_graph, image_frame

    config = text_format.Parse(
        'input_stream: "image" output_stream: "out" node { calculator: "PassThroughCalculator" '
        'input_stream: "image" output_stream: "out" }', calculator_pb2.CalculatorGraphConfig())
    graph = calculator_graph.CalculatorGraph(graph_config=config)
    graph.observe_output_stream("out", lambda *_: None)
    graph.start_run()
    clock = [0]

    def run(i: int) -> None:
        clock[0] += 1
        frame = packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB,
                                                  data=images[i])
        graph.add_packet_to_input_stream(stream="image", packet=frame.at(clock[0]))
        graph.wait_until_idle()

    return run


def main() -> None:
    import cv2

    from maskface.maskgen import facemesh as fm
    from maskface.maskgen import landmarks as lm
    from maskface.maskgen.decode import decode_image
    from maskface.maskgen.find_faces import get_roi_mesher, roi_from_landmarks
    from maskface.maskgen.sources import read_source, resolve_source

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.src).exists():
        sys.exit(f"no source at {args.src} (pass --src)")
    cv2.setNumThreads(1)  # as in the generator's workers
    _, items = resolve_source(args.src)
    images, rois = [], []
    for item in items:
        if len(images) == args.limit:
            break
        rgb = np.ascontiguousarray(decode_image(read_source(item)))
        try:
            rois.append(roi_from_landmarks(lm.detect_landmarks(rgb).points))
        except lm.NoFace:
            continue  # the networks are timed on faces
        images.append(rgb)
    n, r = len(images), args.repeat
    facemesh, detector = lm.get_detector(True), lm.get_face_detector(0, 0.5)
    attention, plain = get_roi_mesher(True), get_roi_mesher(False)
    lite = fm.get_face_mesh()

    def detect_with(runtime: str) -> Callable[[int], object]:
        def run(i: int) -> object:
            if lm.landmark_runtime() != runtime:
                os.environ["MASKFACE_LANDMARK_RUNTIME"] = runtime
                lm.landmark_runtime.cache_clear()
            return lm.detect_landmarks(images[i])

        return run

    def in_chunks(fn: Callable[[list[np.ndarray]], object]) -> Callable[[int], object]:
        def run(i: int) -> object:  # the whole chunk at its first picture
            if i % CHUNK == 0:
                if lm.landmark_runtime() != "litert":
                    os.environ["MASKFACE_LANDMARK_RUNTIME"] = "litert"
                    lm.landmark_runtime.cache_clear()
                return fn(images[i:i + CHUNK])
            return None

        return run

    ms = best_ms({
        "detect_landmarks_litert": detect_with("litert"),
        "detect_landmarks_many_litert": in_chunks(lm.detect_landmarks_many),
        "detect_landmarks_mediapipe": detect_with("mediapipe"),
        "facemesh_litert": lambda i: lite.faces(images[i]),
        "facemesh_litert_many": in_chunks(lite.faces_many),
        "litert_face_detector": lambda i: lite.detector(images[i]),
        "litert_landmarks_attention": lambda i: lite.landmarks(images[i], rois[i]),
        "facemesh_graph": lambda i: lm.face_mesh_run(facemesh, images[i]),
        "face_detector": lambda i: detector.process(images[i]),
        "landmarks_attention": lambda i: attention(images[i], rois[i]),
        "landmarks_plain": lambda i: plain(images[i], rois[i]),
        "passthrough_graph": passthrough(images),
    }, n, r)
    sizes = np.array([im.shape[:2] for im in images])
    print(json.dumps({"bench": "facemesh", "src": args.src, "images": n, "repeat": r,
                      "median_size_hw": np.median(sizes, 0).tolist(), "ms_per_image": ms},
                     indent=1))


if __name__ == "__main__":
    main()
