"""Head types from head scores: previous-token, induction or other (frame -> frame).

Level: ``analysis`` (imports ``errors`` and ``frame`` only).
"""

from typing import Literal, get_args

import numpy as np
import pandas as pd

from induction_lens.constants import HEAD_METRICS
from induction_lens.errors import EvalError

HeadType = Literal["previous_token", "induction", "other"]
HEAD_TYPES: tuple[str, ...] = get_args(HeadType)
"""The head types of the Model Analysis Table's ablation rows ("previous token; induction;
other"), as assigned by :func:`classify_heads`."""


PREVIOUS_TOKEN_THRESHOLD = 0.1
"""Default :func:`classify_heads` threshold on the previous-token score."""


PREFIX_MATCHING_THRESHOLD = 0.3
"""Default :func:`classify_heads` threshold on the prefix-matching score."""


COPYING_THRESHOLD = -0.5
"""Default :func:`classify_heads` threshold on the copying score."""


def classify_heads(scores: pd.DataFrame, *,
                   previous_token_threshold: float = PREVIOUS_TOKEN_THRESHOLD,
                   prefix_threshold: float = PREFIX_MATCHING_THRESHOLD,
                   copying_threshold: float | None = COPYING_THRESHOLD) -> pd.DataFrame:
    """Label each head "induction", "previous_token" or "other" (the ablation rows' colours).

    The paper defines an induction head as one that does both prefix matching and copying ("Key
    Concepts") and colours heads "previous token; induction; other" without giving thresholds.
    Ours, each a multiple of the score a head gets by chance (all thresholds inclusive):

    * **induction**: prefix matching >= ``prefix_threshold`` (0.3: ten times the ~0.03 of
      uniform attention on the paper's ``1 + 25 x 4`` tokens) and, when copying was measured and
      ``copying_threshold`` is not None, copying >= ``copying_threshold`` (-0.5, i.e.
      ``rho >= 1/8``: the attended token is raised at least four times as much as the average
      other sample token; a head raising the sample evenly scores ``4/26 - 1 = -0.85``). The
      copying bar is low because the direct path of a small model's induction head also
      raises the tokens its value vectors picked up from earlier heads; the laptop
      ``attn-only-2l`` heads with prefix scores above 0.8 copy at about -0.2.
    * **previous_token**: not induction, and previous-token score >= ``previous_token_threshold``
      (0.1: three times uniform attention's ~0.035 on 128 tokens, eight times its ~0.012 on
      512). The laptop models' previous-token heads are diffuse (the ``attn-only-2l``
      layer-0 heads score 0.12-0.15 while carrying its induction circuit); heads of longer
      trained models score much higher. Inputs much shorter than 128 tokens raise the chance
      level (``mean_i 1/(i+1)``); raise the threshold for them.
    * **other**: everything else, including prefix-matching heads with low copying (the
      paper's "anti-copying prefix-search" heads).

    Args:
        scores: a frame with ``layer, head, metric, value`` (from :func:`head_scores`, or from
            the sweep, in which case heads are classified per ``run``/``step``).

    Returns:
        One row per head (per run/step when present) with ``layer, head, head_type`` and the
        three scores as columns (NaN where not measured).
    """
    missing = {"layer", "head", "metric", "value"} - set(scores.columns)
    if missing:
        raise EvalError(f"scores lacks columns {sorted(missing)}; pass the frame head_scores "
                        "returns")
    keys = [c for c in ("run", "step", "train_tokens") if c in scores.columns]
    rows = scores[scores["metric"].isin(HEAD_METRICS) & scores["layer"].notna()]
    if "prefix_matching" not in set(rows["metric"]) and "previous_token" not in set(rows["metric"]):
        raise EvalError("classify_heads needs prefix_matching and/or previous_token scores")
    wide = rows.pivot_table(index=keys + ["layer", "head"], columns="metric", values="value",
                            aggfunc="first")
    for metric in HEAD_METRICS:
        if metric not in wide.columns:
            wide[metric] = np.nan
    wide = wide.reset_index()
    wide.columns.name = None
    prefix_ok = wide["prefix_matching"] >= prefix_threshold
    if copying_threshold is not None:
        prefix_ok &= wide["copying"].isna() | (wide["copying"] >= copying_threshold)
    prev_ok = wide["previous_token"] >= previous_token_threshold
    wide["head_type"] = np.where(prefix_ok, "induction", np.where(prev_ok, "previous_token",
                                                                  "other"))
    wide["layer"] = wide["layer"].astype(int)
    wide["head"] = wide["head"].astype(int)
    return wide[keys + ["layer", "head", "head_type", *HEAD_METRICS]]
