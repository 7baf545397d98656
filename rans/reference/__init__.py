"""The readable NumPy reference codec; it defines format version 1.

Examples
--------
>>> import numpy as np
>>> from rans.reference import coder
>>> plane = np.array([1, 2, 2, 3] * 100, dtype=np.uint8)
>>> section = coder.encode(plane, chunk=128)
>>> bool((coder.decode(section, plane.size) == plane).all())
True
"""
