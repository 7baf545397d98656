"""Weights that stay compressed in memory and are decoded just in time, for torch models.

Large parameters are kept compressed (on the GPU, or in host memory on a
machine without one) and decoded into one scratch buffer right before the
module, or the transformer block, that uses them runs. Outputs are
bit-identical to the uncompressed model's. ``import rans`` does not import
this package (nor torch).

Examples
--------
>>> import torch, rans.torch
>>> model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 256))
>>> x = torch.randn(4, 256)
>>> expected = model(x)
>>> weights = rans.torch.compress_model(model, min_bytes=1024, groups="module")
>>> torch.equal(model(x), expected)
True
>>> report = weights.report()
>>> report.total_original
526336
"""

from .report import Report, Row, file_report
from .weights import CompressedWeights, compress_model, empty_weights, load_model

__all__ = ["compress_model", "load_model", "empty_weights", "CompressedWeights", "Report", "Row", "file_report"]
