"""The world's vocabulary: the regions, merchant categories and channels a transaction can name.

Owns: the one list of each. The synthetic world draws from it (``pipelines.generate``), the
shared transform encodes with it (``features.transforms``: a value's position is its code),
serving's request schema accepts exactly it, and the data-quality suites check against it. A
category added here is generated, encoded, accepted and validated at once; defined twice, the
side that lacks it would encode it as -1 — training-serving skew inside the code itself.

Must not: import anything; reorder or remove a value without a new transform version (codes are
positions, and a trained model learned them).
"""

from __future__ import annotations

REGIONS: tuple[str, ...] = ("NA", "EU", "APAC", "LATAM", "MEA")
MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "fuel",
    "restaurants",
    "fashion",
    "utilities",
    "travel",
    "electronics",
    "digital_goods",
    "gift_cards",
    "gambling",
)
CHANNELS: tuple[str, ...] = ("app", "web")
