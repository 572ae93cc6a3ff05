"""maskface: synthetic masked-face data (maskgen) and mask-removal models (training)."""

__version__ = "0.1.0"
