"""maskgen: landmark-driven synthetic masks on real faces, written as training shards.

The data flows one way, driven by :mod:`maskface.maskgen.pipeline` (``maskface generate``):
sources -> decode -> landmarks -> samples (align, render) -> encode -> shards.

Where things are:

- ``facepoints``: which of the 478 landmarks is which (below everything; imports nothing of
  the project).
- ``landmarks``: the generator's face finding (MediaPipe FaceMesh with retries), and the
  MediaPipe glue; ``facemesh``: FaceMesh's networks on LiteRT; ``landmark_cache``.
- ``find_faces``: every face of a real photo, masked ones too (what ``unmask`` uses).
- ``samples``: a face's samples (mask types, wear, colours, the checks that refuse one), for
  ``generate``, ``preview`` and the benchmarks alike.
- ``render`` draws one mask on one aligned face (``templates``, read from ``assets/masks`` or
  MaskTheFace packs by ``maskthefacecfg``; ``warp``, ``texture``, ``raster``); ``placement``
  checks where it sits; ``align``, ``pose``.
- ``pipeline``: shard tasks, workers, resume, manifest; ``shards``: the tar format.
- ``sources``, ``split``, ``decode``, ``encode``; ``demo``: the built-in pictures;
  ``preview``: contact sheets; ``photo``: masks on whole photos; ``rejection``: the shape of
  every "cannot use this" error.
"""
