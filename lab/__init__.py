"""The scenario lab: the engine that breaks the stack on purpose and checks the repair.

Owns: the verbs every scenario shares (``engine.Lab``: list, break, verify, hint, reveal,
reset, seal, unseal), the manifest schema (``manifest``), the catalogue reader
(``catalogue``), the encrypted state (``state``, ``crypto``), what a scenario's functions
receive (``context.ScenarioContext``) and return (``context.Check``), git helpers for
code-review scenarios (``git``), the interview record of every session (``record``) and
its scorecard (``scorecard``), lab mode — the curriculum and each learner's progress
(``learning``) — the pages both write in markdown and HTML (``document``) and the
``fraudlab lab`` CLI (``cli``).

Must not: contain any scenario (they live in ``broken_scenarios/<NN>-<slug>/``), or print
anything a candidate could read that names one.

A scenario is written against three names only::

    from lab import Check, ScenarioContext

    def inject(ctx: ScenarioContext) -> None: ...
    def verify(ctx: ScenarioContext) -> list[Check]: ...
    def reset(ctx: ScenarioContext) -> None: ...

See ``broken_scenarios/AUTHORING.md`` for the whole contract.
"""

from lab.context import Check, CommandFailed, Level, ScenarioContext

__all__ = ["Check", "CommandFailed", "Level", "ScenarioContext"]
