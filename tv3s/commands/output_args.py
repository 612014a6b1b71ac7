"""The OUTPUT argument shared by the subcommands that read or maintain a job's outputs.

Credentials are not options: botocore reads them from the environment, AWS_PROFILE or
~/.aws, or an instance role. `--endpoint-url` mirrors the data-plane commands'.
"""

from __future__ import annotations

import argparse

from ..pipeline.outputs.commit import Output
from .store_args import add_endpoint_argument, storage_options


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUTPUT", help="output location of a job: a folder or s3://bucket/prefix")
    add_endpoint_argument(parser)


def open_output(args: argparse.Namespace) -> Output:
    return Output(args.output, storage_options(args))
