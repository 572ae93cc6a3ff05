"""training: the RA-UNet (and its ablation variants) trained on maskgen shards.

Needs torch, numpy and OpenCV only: no MediaPipe, no numba (GPU machines have neither).
"""
