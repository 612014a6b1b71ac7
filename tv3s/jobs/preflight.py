"""What can be checked before Ray starts: a mistake then costs seconds and one message.

Left to the cluster, a wrong checkpoint path fails inside every actor's constructor (a Ray
traceback), and an address nothing answers at makes `ray.init` retry for minutes. Both
are found here first, by the driver, with the same code the actors use.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ..model.checkpoint import CheckpointError, infer_config, read_checkpoint
from ..pipeline.ingest.inputs import resolve_inputs
from ..pipeline.storage import StorageError, Store, redact_url
from ..schemas.errors import ErrorKind
from ..schemas.job import JobSpec

CONNECT_TIMEOUT_S = 5.0
ADDRESS_FIX = (
    "pass the head's GCS address HOST:PORT (`ray start --head` prints it; 6379 by default) or ray://HOST:10001, "
    "check that the cluster is up, or leave --address (and RAY_ADDRESS) out to start a local Ray"
)


class PreflightError(ValueError):
    """The job cannot start as given; the message names the setting and the fix."""


def check_inputs(spec: JobSpec, store: Store) -> None:
    """Some input names something to label (listed, not yet probed): a mistyped path fails here."""
    if spec.inputs.index is not None:
        return
    found = resolve_inputs(spec.inputs.shards, store)
    if not found.shards and not found.videos:
        first = found.errors[0] if found.errors else None
        why = f"{first.url}: {first.message}; {first.hint}" if first else "the input list is empty"
        raise PreflightError(f"nothing to label: {why}")


def check_checkpoint(spec: JobSpec, store: Store) -> None:
    """The spec's checkpoint can be read and is a TV3S checkpoint (its architecture is inferred from
    it, as each actor will): a typo or a wrong file fails here, not in every actor."""
    where = spec.model.checkpoint
    if where is None:
        return
    shown = redact_url(where)
    try:
        data = store.read_all(where)
    except StorageError as exc:
        if exc.record.kind == ErrorKind.not_found:
            raise PreflightError(
                f"checkpoint {shown}: no such file; check the path (a TV3S .pth file, local or s3://)"
            ) from None
        raise PreflightError(f"checkpoint {shown} cannot be read: {exc.record.message}; {exc.record.hint}") from None
    try:
        state, meta, _ = read_checkpoint(data)
        infer_config(state, meta)
    except CheckpointError as exc:
        raise PreflightError(
            f"{shown} is not a TV3S checkpoint ({exc}); pass an official TV3S .pth or one written by tv3s train"
        ) from None


def check_same_labeling(spec: JobSpec) -> None:
    """A job of this name in the output labelled with the same model and settings (or none is there):
    checked before anything is written, so a refused run leaves the output and its spec file as they
    were."""
    from .runner import JobError, check_recorded, open_output

    try:
        check_recorded(spec, open_output(spec))
    except JobError as exc:
        raise PreflightError(str(exc)) from None


def check_ray_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A Ray address must be HOST:PORT (or ray://HOST:PORT) where something listens: checked with one
    TCP connection, since `ray.init` retries an unanswered address for minutes."""
    if address is None or address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"//{address}")
    if parts.scheme in ("http", "https"):
        raise PreflightError(
            f"--address {address} is a Ray dashboard URL, which `tv3s submit` takes; `tv3s run` joins a cluster "
            f"directly: {ADDRESS_FIX}"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise PreflightError(f"--address {address} is not HOST:PORT: {ADDRESS_FIX}")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PreflightError(f"no Ray cluster answers at {address} ({reason}): {ADDRESS_FIX}") from None
