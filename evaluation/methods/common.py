"""Constants and conversions shared by the estimators (and by the evaluation built on them)."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))  # two-sided 95% normal critical value


def json_safe(x, digits: int | None = None):
    """A strict-JSON copy of nested dicts, lists and scalars: NaN and infinities become None,
    numpy scalars Python ones, dict keys strings; floats are rounded to ``digits`` if given."""
    if isinstance(x, dict):
        return {str(k): json_safe(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v, digits) for v in x]
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return x if digits is None else round(x, digits)
    return x
