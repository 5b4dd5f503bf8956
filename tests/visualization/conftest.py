import numpy as np
import pytest


@pytest.fixture(scope='session')
def open3d_renderer():
    """The open3d offscreen renderer, or a skip naming why it cannot start here."""
    from projects.pointcloud.visualization import Open3DRenderer, frame_camera
    try:
        renderer = Open3DRenderer(point_size=4)
        renderer.render(np.zeros((1, 3)), np.zeros((1, 3), np.uint8), frame_camera(np.zeros((1, 3)), 8, 8))
    except (ImportError, RuntimeError) as err:
        pytest.skip(f'open3d cannot render offscreen here: {err}')
    yield renderer
    renderer.close()


@pytest.fixture
def two_blobs():
    """200 points: a sphere shell (label 0) beside a cube (label 1)."""
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(100, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    cube = rng.uniform(-0.5, 0.5, (100, 3)) + np.array([2.0, 0.0, 0.0])
    labels = np.r_[np.zeros(100, np.int64), np.ones(100, np.int64)]
    return np.concatenate([sphere, cube]).astype(np.float32), labels
