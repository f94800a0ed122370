"""Time helpers shared by the pipeline stages. Owns nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Seconds since the epoch, whatever the column's time unit (ns from pandas, us from DuckDB)."""
    return (timestamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
