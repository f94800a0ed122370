"""Online scoring: the BentoML service that answers "decline or approve?" for one transaction.

Owns: the HTTP contract (``serving.schemas``), the champion model as served (``serving.model``),
online feature lookup with its fallback (``serving.online_features``), the prediction log and
the velocity push (``serving.prediction_log``), serving's Prometheus metrics
(``serving.metrics``) and the 422 status for invalid requests (``serving.http``).
``serving.service`` wires them into ``FraudScorer``.

Must not: compute model inputs (``features.transforms`` does, for training and serving alike),
train or promote models, or define features.
"""
