"""The ``fraudlab`` command: one Typer app over every layer (``fraudlab.cli``).

Owns: the command line only — parsing options, printing for people, exit codes. Each command
calls the layer that does the work (``control`` for the stack, ``pipelines`` for the stages,
``monitoring``, ``traffic``, ``bench``, and ``lab`` for the scenario verbs).
Must not: hold logic a test or a DAG would need; nothing imports this package.
"""
