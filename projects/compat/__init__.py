"""Runtime patches for third-party gaps (mmcv-lite's missing ``mmcv.ops``, mmengine's checkpoint
loading under ``weights_only=True``, CPU DDP, open3d's libusb), each in its own module.

They are installed in one place, :func:`projects.runtime.install_compat`; ``attn_ops`` never
imports them.
"""
