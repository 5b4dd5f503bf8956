"""What the visualization tests share."""
import numpy as np


def parse_ply(path):
    """A small PLY reader written for the tests (binary little-endian and ascii vertex elements)."""
    types = {'float': '<f4', 'float32': '<f4', 'double': '<f8', 'uchar': 'u1', 'uint8': 'u1',
             'int': '<i4', 'int32': '<i4', 'short': '<i2', 'ushort': '<u2', 'uint': '<u4', 'char': 'i1'}
    with open(path, 'rb') as f:
        assert f.readline().strip() == b'ply'
        fmt, count, props = None, 0, []
        while True:
            words = f.readline().decode('ascii').split()
            if words[0] == 'format':
                fmt = words[1]
            elif words[0] == 'element':
                assert words[1] == 'vertex'
                count = int(words[2])
            elif words[0] == 'property':
                props.append((words[2], types[words[1]]))
            elif words[0] == 'end_header':
                break
        if fmt == 'ascii':
            return np.loadtxt(f, ndmin=2)
        return np.frombuffer(f.read(), dtype=props, count=count)


def rgb_of(rec):
    """(N, 3) colours of a parsed PLY."""
    return np.stack([rec['red'], rec['green'], rec['blue']], 1)
