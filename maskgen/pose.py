"""Head pose (yaw, pitch, roll in degrees) from FaceMesh's 3D landmarks.

A face frame is built from the eye line and the eye-to-mouth direction; the face normal gives
yaw and pitch, the eye line roll. Good to a few degrees, which is what placement checks and the
metadata need.
"""

from __future__ import annotations

import numpy as np

from .landmarks import LEFT_EYE, MOUTH, RIGHT_EYE


def head_pose(points: np.ndarray) -> dict[str, float]:
    """``{"yaw", "pitch", "roll"}`` in degrees. Yaw > 0: the face turns towards the image's
    right; pitch > 0: the face tilts up; roll > 0: the head leans clockwise in the image."""
    p = np.asarray(points, np.float64)
    le, re = p[list(LEFT_EYE)].mean(0), p[list(RIGHT_EYE)].mean(0)
    mouth = p[list(MOUTH)].mean(0)
    x = re - le
    x /= np.linalg.norm(x) + 1e-9
    down = mouth - (le + re) / 2
    n = np.cross(x, down)  # points away from the camera for a frontal face (+z)
    n /= np.linalg.norm(n) + 1e-9
    yaw = np.degrees(np.arctan2(-n[0], n[2]))
    pitch = np.degrees(np.arctan2(n[1], np.hypot(n[0], n[2])))
    roll = np.degrees(np.arctan2(x[1], x[0]))
    return {"yaw": round(float(yaw), 2), "pitch": round(float(pitch), 2),
            "roll": round(float(roll), 2)}
