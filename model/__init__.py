"""The model contract: what training writes and serving, the gates and the monitors read.

Owns: the model bundle and how any process loads it from the registry (``registry``), the ONNX
export, its session and the parity rule (``export``), the decision rule, the cost model and the
cost-optimal threshold (``decision``), the metrics that suit a rare-event problem
(``evaluation``), the slices a model is judged on (``slices``) and the typed prediction record
serving writes and every monitor reads (``record``).

Must not: import ``pipelines``, ``serving``, ``monitoring`` or anything above them. Training
builds models with this package; serving runs them with it; neither reaches into the other.
"""
