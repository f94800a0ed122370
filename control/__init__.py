"""The control plane: bringing the stack up and down, and acting on it while it runs.

Owns: the embedded stack's processes (``stack``), serving's release supervisor and its
releases (``serve``, ``releases``), the containerised stack (``compose``, ``containers``,
``healthcheck``), Airflow's embedded home (``airflow``), live overrides (``config``) and the
candidate's checkout (``checkout``).

Must not: hold business logic of the layers below (it calls ``pipelines``, ``serving``,
``monitoring``, ``traffic`` and ``bench``), or know any scenario (``lab`` sits above it).
"""
