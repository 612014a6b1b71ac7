"""`tv3s schema job`: the JSON schema of job specs (for editors and validation)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON schema of a spec (job)")
    parser.add_argument("what", choices=("job",))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..schemas.job import job_json_schema

    print(json.dumps(job_json_schema(), indent=2))
    return 0
