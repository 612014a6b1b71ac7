"""Object-storage options shared by the data-plane subcommands.

Credentials are deliberately not options: botocore reads them from the environment
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN), AWS_PROFILE and
~/.aws, or an instance/pod role, so they never appear in shell history, job specs or logs.
"""

from __future__ import annotations

import argparse

from ..pipeline.storage import RetryPolicy, Store


def add_endpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible endpoint (MinIO, Ceph, ...); default: AWS_ENDPOINT_URL or AWS",
    )


def storage_options(args: argparse.Namespace) -> dict:
    """fsspec options from --endpoint-url (credentials come from the usual places, never options)."""
    return {"client_kwargs": {"endpoint_url": args.endpoint_url}} if args.endpoint_url else {}


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    add_endpoint_argument(parser)
    parser.add_argument(
        "--retries",
        type=int,
        default=RetryPolicy.attempts,
        metavar="N",
        help=f"attempts per request on transient errors (default {RetryPolicy.attempts})",
    )


def store_from_args(args: argparse.Namespace) -> Store:
    return Store(storage_options(args), RetryPolicy(attempts=max(1, args.retries)))


def error_summary(errors) -> str:
    """'3 truncated_tar, 1 bad_metadata' (most frequent first), or 'none'."""
    from collections import Counter

    counts = Counter(e.kind.value for e in errors)
    return ", ".join(f"{n} {kind}" for kind, n in counts.most_common()) or "none"


def print_first_errors(errors, file) -> None:
    """The first record of each kind of error, with its fix: what to do, without opening the errors table."""
    seen: set = set()
    for error in errors:
        if error.kind not in seen:
            seen.add(error.kind)
            print(f"  first {error.kind.value}: {error.url}: {error.message}; {error.hint}", file=file)
