"""maskgen: landmark-driven synthetic masks on real faces, written as training shards.

The data flows one way: sources -> landmarks -> align -> templates/warp -> render -> shards,
driven by :mod:`maskface.maskgen.pipeline`.
"""
