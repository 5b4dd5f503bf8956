"""Peers: the reference implementations our code is compared with in tests and benchmarks.

They are test and benchmark dependencies only (``fightingcv-attention`` is in
``tests/requirements.txt``); nothing in ``attn_ops`` or ``projects`` imports them.
"""
