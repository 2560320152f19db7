"""Statistics over circuit and head scores: rank correlation for the evaluator validation.

Level: ``analysis`` (imports ``errors`` only).
"""

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from induction_lens.errors import EvalError


def spearman(x: Iterable[float | int], y: Iterable[float | int]) -> float:
    """Spearman rank correlation of paired values (NaN pairs dropped; ties get average ranks).

    The Pearson correlation of the average ranks (``pandas.Series.rank``), which is what
    ``scipy.stats.spearmanr`` computes; scipy is not a dependency. NaN when fewer than 3 pairs
    remain or one side is constant.
    """
    xs = pd.Series(np.asarray(list(x), dtype=np.float64))
    ys = pd.Series(np.asarray(list(y), dtype=np.float64))
    if len(xs) != len(ys):
        raise EvalError(f"spearman needs paired values; got {len(xs)} and {len(ys)}")
    keep = xs.notna() & ys.notna()
    rx, ry = xs[keep].rank(method="average"), ys[keep].rank(method="average")
    if len(rx) < 3 or rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx * rx).sum() * (ry * ry).sum()))
