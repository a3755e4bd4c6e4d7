"""The binary layout of token arrays in the store.

Arrays are stored as raw little-endian bytes in BLOB (SQLite) or bytea
(PostgreSQL) columns; their shape lives in ordinary columns beside them. The
formats, fixed so that other tools can read a store without opd:

============================  =========  ===================================
what                          dtype      shape
============================  =========  ===================================
step token ids                ``<i4``    (N,)
step policy mask              ``u1``     (N,) 0 or 1
step policy log-probs         ``<f4``    (N,) NaN where the policy did not write the token
teacher top-k token ids       ``<i4``    (P, K) P = policy tokens of the step
teacher top-k log-probs       ``<f2``    (P, K) natural log over the full vocabulary
teacher tail mass             ``<f4``    (P,)  probability outside the top k
============================  =========  ===================================

At K = 64 an annotated token costs 64 x (4 + 2) + 4 = 388 bytes, against
V x 4 = 607,744 bytes for fp32 full-vocabulary logits at V = 151,936.
"""

from __future__ import annotations

import numpy as np

TOKEN_IDS = np.dtype("<i4")
MASK = np.dtype("u1")
LOGPROBS = np.dtype("<f4")
TOPK_LOGPROBS = np.dtype("<f2")
TAIL_MASS = np.dtype("<f4")


def to_bytes(array: np.ndarray, dtype: np.dtype) -> bytes:
    """``array`` cast to ``dtype`` (exactly: a lossy cast of token ids is refused) as raw bytes."""
    cast = np.ascontiguousarray(array, dtype=dtype)
    if dtype.kind in "iu" and array.size and not np.array_equal(cast, array):
        raise ValueError(f"Values do not fit {dtype}: cannot store them losslessly.")
    return cast.tobytes()


def from_bytes(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The array stored by :func:`to_bytes`, in native byte order, writable."""
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
