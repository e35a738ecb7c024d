"""Exact equality of estimation results, to the last bit: for tests that a faster formulation
gives what the previous one gave (floats compared bitwise, NaN equal to NaN; frames and series
with their index, names and dtypes)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd


def differences(a, b, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ (empty: identical)."""
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} != {type(b).__name__}"]
    if dataclasses.is_dataclass(a):
        return [d for f in dataclasses.fields(a)
                for d in differences(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")]
    if isinstance(a, dict):
        if list(a) != list(b):
            return [f"{path}: keys {list(a)} != {list(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}[{k!r}]")]
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    try:
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        elif isinstance(a, pd.Series):
            pd.testing.assert_series_equal(a, b, check_exact=True)
        elif isinstance(a, pd.Index):
            pd.testing.assert_index_equal(a, b, exact=True)
    except AssertionError as e:
        return [f"{path}: {e}"]
    if isinstance(a, pd.Index):
        return [] if a.names == b.names else [f"{path}: names {a.names} != {b.names}"]
    if isinstance(a, (pd.DataFrame, pd.Series)):
        names = [a.index.names, *([a.columns.names] if isinstance(a, pd.DataFrame) else [])]
        others = [b.index.names, *([b.columns.names] if isinstance(b, pd.DataFrame) else [])]
        return [] if names == others else [f"{path}: index names {names} != {others}"]
    if isinstance(a, np.ndarray):
        same = a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return [] if same else [f"{path}: arrays differ"]
    if isinstance(a, (float, np.floating)):
        same = (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b))
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def assert_identical(a, b) -> None:
    found = differences(a, b)
    assert not found, "\n".join(found[:20])
