"""Runtime patches for third-party gaps, each in its own module and applied only on request.

Nothing here is imported by ``attn_ops`` itself; the projects and tools call what they need.
"""
