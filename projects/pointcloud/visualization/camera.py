"""The camera every view of a cloud shares: a pinhole looking at the centre of the cloud."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UP_AXES = {'x': (1., 0., 0.), 'y': (0., 1., 0.), 'z': (0., 0., 1.)}


@dataclass(frozen=True)
class Camera:
    """A pinhole camera (OpenCV convention: x right, y down, z forward) for a W x H image.

    ``extrinsic`` (4, 4) maps world to camera coordinates; ``fov`` is the vertical field of view
    in degrees. Both renderers project with exactly these numbers.
    """

    width: int
    height: int
    fov: float
    extrinsic: np.ndarray

    @property
    def focal(self) -> float:
        return (self.height / 2.0) / math.tan(math.radians(self.fov) / 2.0)

    @property
    def intrinsic(self) -> np.ndarray:
        f = self.focal
        return np.array([[f, 0., self.width / 2.0 - 0.5],
                         [0., f, self.height / 2.0 - 0.5],
                         [0., 0., 1.]])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (N, 2) pixel coordinates (u right, v down) and (N,) depths."""
        pts = np.asarray(points, np.float64)
        cam = pts @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]
        depth = cam[:, 2]
        uv = cam[:, :2] / np.maximum(depth, 1e-9)[:, None] * self.focal
        uv += np.array([self.width / 2.0 - 0.5, self.height / 2.0 - 0.5])
        return uv, depth


def frame_camera(points: np.ndarray, width: int = 480, height: int = 480, up: str = 'y',
                 azimuth: float = 45.0, elevation: float = 25.0, fov: float = 40.0,
                 margin: float = 1.08) -> Camera:
    """The camera that frames ``points`` (N, 3): it looks at the centre of their bounding box from
    the direction given by ``azimuth``/``elevation`` (degrees, around the ``up`` axis), at the
    distance where the bounding sphere fills the smaller image side (times ``margin``)."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f'points must be (N, 3) with N >= 1, got shape {pts.shape}')
    if up not in UP_AXES:
        raise ValueError(f'up must be one of {sorted(UP_AXES)}, got {up!r}')
    center = (pts.min(0) + pts.max(0)) / 2
    radius = max(float(np.linalg.norm(pts - center, axis=1).max()), 1e-6)
    up_v = np.asarray(UP_AXES[up])
    # two horizontal axes orthogonal to up, forming a right-handed frame (a, b, up)
    a = np.roll(up_v, 1)
    b = np.cross(up_v, a)
    az, el = math.radians(azimuth), math.radians(elevation)
    front = math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up_v  # centre -> eye
    half = math.radians(fov) / 2
    if width < height:  # the narrower side sets the framing
        half = math.atan(math.tan(half) * width / height)
    eye = center + front * radius * margin / math.sin(half)
    forward = -front
    right = np.cross(forward, up_v)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    ext = np.eye(4)
    ext[:3, :3] = rot
    ext[:3, 3] = -rot @ eye
    return Camera(int(width), int(height), float(fov), ext)
