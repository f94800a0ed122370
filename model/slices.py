"""The slices a model is judged on: merchant category, home region and account-age bucket.

Owns: the slice definitions (which column of a scored frame each slice groups by) and how a
scored frame gets those columns. Training's evaluation report, the promotion gates' slice
regression rule and the live performance monitor all slice the same way through here.

Must not: compute metrics (``model.evaluation``) or read data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ACCOUNT_AGE_BUCKETS = (-np.inf, 30.0, 365.0, np.inf)
ACCOUNT_AGE_LABELS = ("<30d", "30d-1y", ">1y")


def account_age_bucket(account_age_days: np.ndarray) -> np.ndarray:
    idx = np.digitize(np.asarray(account_age_days, dtype=float), ACCOUNT_AGE_BUCKETS[1:-1])
    return np.array(ACCOUNT_AGE_LABELS, dtype=object)[idx]


def slice_frame(
    frame: pd.DataFrame, x: np.ndarray, feature_order: list[str], score: np.ndarray
) -> pd.DataFrame:
    age = x[:, feature_order.index("account_age_days")]
    return pd.DataFrame(
        {
            "y": frame["label"].to_numpy(),
            "score": score,
            "amount": frame["amount"].to_numpy(),
            "merchant_category": frame["merchant_category"].fillna("unknown").to_numpy(),
            "region": frame["home_region"].fillna("unknown").to_numpy(),
            "account_age": account_age_bucket(age),
        }
    )


SLICES = {
    "merchant_category": "merchant_category",
    "region": "region",
    "account_age": "account_age",
}
