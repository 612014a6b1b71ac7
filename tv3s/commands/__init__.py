"""Subcommands of the `tv3s` console script.

Each module exposes `register(subparsers)`, which adds its parser and sets
`run`, and `run(args) -> int` (the exit code). `tv3s.cli` lists the modules.
"""
