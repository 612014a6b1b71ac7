"""The OUTPUT argument shared by the subcommands that read or maintain a job's outputs.

Credentials are not options: botocore reads them from the environment, AWS_PROFILE or
~/.aws, or an instance role. `--endpoint-url` mirrors the data-plane commands'.
"""

from __future__ import annotations

import argparse

from ..pipeline.commit import Output


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUTPUT", help="output location of a job: a folder or s3://bucket/prefix")
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible endpoint (MinIO, Ceph, ...); default: AWS_ENDPOINT_URL or AWS",
    )


def storage_options(args: argparse.Namespace) -> dict:
    return {"client_kwargs": {"endpoint_url": args.endpoint_url}} if args.endpoint_url else {}


def open_output(args: argparse.Namespace) -> Output:
    return Output(args.output, storage_options(args) if "://" in args.output else None)
