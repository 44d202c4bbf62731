"""Schemathesis hooks for ``onnxkit serve``: what JSON Schema cannot say about a binary body.

An ``application/x-npy`` body is a NumPy file; its schema can only say "binary". Loaded by
schemathesis through ``SCHEMATHESIS_HOOKS``; ``ONNXKIT_NPY_FEATURES`` is the model's width.
"""

from __future__ import annotations

import io
import os

import numpy as np
import schemathesis
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnxkit.contract.layout import MAX_EXPLAIN_INSTANCES

FEATURES = int(os.environ.get("ONNXKIT_NPY_FEATURES") or 0)


@st.composite
def npy_files(draw: st.DrawFn) -> bytes:
    """A 2-D float32 or float64 .npy file of finite values, 1 to MAX_EXPLAIN_INSTANCES rows of
    FEATURES columns (one strategy for every operation, so within /explain's row cap too)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rows = draw(st.integers(1, MAX_EXPLAIN_INSTANCES))
    values = draw(hnp.arrays(dtype, (rows, FEATURES), elements=st.floats(-1e6, 1e6, width=32)))
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


if FEATURES:
    schemathesis.openapi.media_type("application/x-npy", npy_files())
