"""Doctest collection of the package: ``rans.torch`` needs PyTorch, an optional dependency.

Without torch installed its modules are not collected (``tests/test_torch.py``
skips itself the same way); everything else in ``rans/`` is.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("torch") else ["rans/torch/*"]
