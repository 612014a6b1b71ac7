"""All byte I/O of the data plane: local paths and object storage (s3://) through fsspec.

Why one module: every read of a shard goes through `Store.read`, so there is exactly one
retry policy and one place that turns a storage failure into a typed `InputError`.

* **Retries.** Transient failures (timeouts, 5xx, SlowDown/throttling, dropped or short
  responses, refused connections) are retried with exponential backoff and full jitter;
  permanent ones (404, 403, other 4xx) are reported at once. s3fs and botocore have retry
  loops of their own; `Store` turns them down to a single attempt by default so that the
  policy here is the only one and its limits are the real limits.
* **Credentials** come only from where botocore looks (environment, ~/.aws profiles,
  instance or pod roles) or from storage options the caller passes. They are never
  logged or written: URLs are redacted before they enter a message or a record, and a
  `Store` does not print its options.
"""

from __future__ import annotations

import errno
import http.client
import io
import logging
import random
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import fsspec
from braceexpand import braceexpand

from ..schemas.errors import ErrorKind, InputError

log = logging.getLogger(__name__)
T = TypeVar("T")

S3_PROTOCOLS = frozenset({"s3", "s3a"})
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "InternalError",
        "RequestLimitExceeded",
        "TooManyRequests",
        "BadGateway",
        "GatewayTimeout",
    }
)
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EBUSY,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.EPIPE,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        getattr(errno, "EREMOTEIO", errno.EIO),
    }
)
GLOB_CHARS = re.compile(r"[*?\[]")
RANGE_BLOCK = 1 << 20  # bytes per ranged request of a file opened with `Store.open`


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: wait uniform(0, min(max_delay, base_delay * 2**try)).

    Full jitter spreads the retries of many workers hitting the same throttled prefix
    (the reason S3 answers SlowDown) instead of having them retry in lockstep.
    """

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 20.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))


class StorageError(Exception):
    """A storage operation failed for good; `record` is the typed error to store."""

    def __init__(self, record: InputError):
        super().__init__(str(record))
        self.record = record


class ShortReadError(OSError):
    """The server sent fewer bytes than the range asked for (a dropped connection)."""


def redact_url(url: str) -> str:
    """The URL without user info or query string (where presigned credentials live)."""
    parts = urlsplit(url)
    if not parts.scheme or (not parts.netloc and not parts.query):
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def classify(exc: BaseException) -> ErrorKind | None:
    """None when `exc` is transient (retry it); otherwise the kind of the permanent failure.

    The whole cause chain is inspected because s3fs re-raises botocore's ClientError as
    an OSError whose `__cause__` carries the HTTP status and the S3 error code.
    """
    if isinstance(exc, FileNotFoundError):
        return ErrorKind.not_found
    if isinstance(exc, PermissionError) or credentials_missing(exc):
        return ErrorKind.forbidden
    for link in cause_chain(exc):
        response = getattr(link, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(response["Error"].get("Code", ""))
            if status >= 500 or status in (408, 429) or code in TRANSIENT_CODES:
                return None
            if status == 404 or code in ("NoSuchKey", "NoSuchBucket", "404"):
                return ErrorKind.not_found
            if status == 403 or code in ("AccessDenied", "403"):
                return ErrorKind.forbidden
            return ErrorKind.unreachable
        if isinstance(link, _transient_types()):
            return None
        if isinstance(link, OSError) and link.errno in TRANSIENT_ERRNOS:
            return None
    return ErrorKind.unreachable


def credentials_missing(exc: BaseException) -> bool:
    """botocore found no credentials at all (not a network failure: retrying cannot help)."""
    return any(type(link).__name__ in ("NoCredentialsError", "PartialCredentialsError") for link in cause_chain(exc))


def cause_chain(exc: BaseException) -> Iterable[BaseException]:
    """`exc` and the exceptions it was raised from or during, once each."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


@lru_cache(maxsize=1)
def _storage_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the storage failed" (anything else is a bug and propagates)."""
    types: list[type[BaseException]] = [OSError, http.client.HTTPException, *_transient_types()]
    try:
        import botocore.exceptions as bx

        types += [bx.BotoCoreError, bx.ClientError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import aiohttp

        types.append(aiohttp.ClientError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


@lru_cache(maxsize=1)
def _transient_types() -> tuple[type[BaseException], ...]:
    """Network-level exception types of the stacks under fsspec (imported lazily: optional)."""
    types: list[type[BaseException]] = [
        TimeoutError,
        ConnectionError,
        socket.timeout,
        http.client.IncompleteRead,
        ShortReadError,
    ]
    try:
        from fsspec.exceptions import FSTimeoutError

        types.append(FSTimeoutError)
    except ImportError:  # pragma: no cover - old fsspec
        pass
    try:
        import botocore.exceptions as bx
        from botocore.parsers import ResponseParserError

        types += [
            bx.HTTPClientError,
            bx.ConnectionError,
            bx.ResponseStreamingError,
            bx.IncompleteReadError,
            ResponseParserError,
        ]
    except ImportError:  # pragma: no cover - no s3 support installed
        pass
    try:
        import aiohttp

        types += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


HINTS = {
    ErrorKind.not_found: "check the URL (bucket, prefix, shard numbering) or re-run `tv3s index` if shards moved",
    ErrorKind.forbidden: "the credentials in use may not read this object: check AWS_PROFILE / AWS_ACCESS_KEY_ID "
    "and the bucket policy",
    ErrorKind.unreachable: "the storage endpoint kept failing; check the endpoint URL (AWS_ENDPOINT_URL) and the "
    "network, then re-run the job for this input",
}
NO_CREDENTIALS_HINT = (
    "no credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the "
    "environment of every process that reads it"
)


def failure_record(exc: BaseException, url: str, kind: ErrorKind, stage: str, attempts: int) -> InputError:
    """The typed record of a failed storage call; the message never contains credentials."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    detail = redact_text(f"{type(exc).__name__}: {exc}")
    return InputError(
        kind=kind,
        stage=stage,
        url=redact_url(url),
        message=f"{kind.value}{tries} ({detail})",
        hint=NO_CREDENTIALS_HINT if credentials_missing(exc) else HINTS.get(kind, HINTS[ErrorKind.unreachable]),
    )


def redact_text(text: str) -> str:
    """Strip URL user info and presigned query strings from free text (exception messages)."""
    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1", text)
    return re.sub(r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s]+", r"\1***", text)


def _s3_defaults(options: dict) -> dict:
    """Single-attempt s3fs/botocore so `RetryPolicy` is the one retry loop; bounded timeouts."""
    merged = dict(options)
    config = dict(merged.get("config_kwargs") or {})
    config.setdefault("retries", {"total_max_attempts": 1})
    config.setdefault("connect_timeout", 10)
    config.setdefault("read_timeout", 60)
    merged["config_kwargs"] = config
    return merged


@dataclass(frozen=True)
class Listed:
    """A file found under a folder or prefix: its URL, its path below that folder, its size."""

    url: str
    name: str
    size: int
    version: str | None = None  # see `file_version`


def file_version(info: dict) -> str | None:
    """What changes when a file is re-written, from its listing entry: the ETag on an object store
    (a re-upload gets a new one), size and modification time on disk. Part of what says a video's
    content changed (`tv3s.jobs.plan.video_contents`): a file re-written with members of the same
    sizes is still new content. None when the store says neither."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return f"{info.get('size')}@{stamp}" if stamp is not None else None


class _RangedFile(io.RawIOBase):
    """A read-only, seekable view of one file whose every read is a ranged `Store.read` (so the
    store's retries apply), for readers that seek (PyAV): they fetch what they ask for, not the file."""

    def __init__(self, store: Store, url: str, size: int) -> None:
        super().__init__()
        self.store, self.url, self.size, self.position = store, url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.size - self.position)
        if count <= 0:
            return 0
        data = self.store.read(self.url, self.position, self.position + count)
        buffer[:count] = data
        self.position += count
        return count


@dataclass
class Store:
    """fsspec access with retries. `options` are s3fs options (endpoint, anon, ...), or empty.

    Leave credentials out of `options` where possible: botocore reads them from the
    environment and profiles, which keeps them out of job specs and pickles.
    """

    options: dict = field(default_factory=dict, repr=False)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def filesystem(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        protocol = fsspec.utils.get_protocol(url)
        if protocol not in S3_PROTOCOLS:
            return fsspec.core.url_to_fs(url)
        fs, path = fsspec.core.url_to_fs(url, **_s3_defaults(self.options))
        fs.retries = 1  # s3fs's own retry loop (a class attribute, not an option): ours replaces it
        return fs, path

    def call(self, url: str, fn: Callable[[], T], stage: str = "read") -> T:
        """Run `fn` (one storage operation on `url`) under the retry policy."""
        attempt = 0
        while True:
            try:
                return fn()
            except StorageError:
                raise
            except _storage_types() as exc:
                kind = classify(exc)
                attempt += 1
                if kind is not None or attempt >= self.policy.attempts:
                    raise StorageError(failure_record(exc, url, kind or ErrorKind.unreachable, stage, attempt)) from exc
                wait = self.policy.delay(attempt - 1, self._rng)
                log.warning(
                    "%s: transient %s (attempt %d/%d), retrying in %.2fs",
                    redact_url(url),
                    type(exc).__name__,
                    attempt,
                    self.policy.attempts,
                    wait,
                )
                time.sleep(wait)

    def size(self, url: str) -> int:
        fs, path = self.filesystem(url)
        return int(self.call(url, lambda: fs.size(path)))

    def stat(self, url: str) -> tuple[int, str | None]:
        """The file's size and version (`file_version`), from one metadata request."""
        fs, path = self.filesystem(url)
        info = self.call(url, lambda: fs.info(path))
        return int(info.get("size") or 0), file_version(info)

    def read(self, url: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of `url` with one ranged request; a short answer is retried."""
        fs, path = self.filesystem(url)

        def ranged() -> bytes:
            data = fs.cat_file(path, start=start, end=end)
            if len(data) != end - start:
                raise ShortReadError(f"got {len(data)} of {end - start} bytes at offset {start}")
            return data

        return self.call(url, ranged)

    def read_all(self, url: str) -> bytes:
        fs, path = self.filesystem(url)
        return self.call(url, lambda: fs.cat_file(path))

    def write(self, url: str, data: bytes) -> None:
        """Write a whole object; parents are created for local paths."""
        fs, path = self.filesystem(url)

        def put() -> None:
            fs.makedirs(fs._parent(path), exist_ok=True)
            fs.pipe_file(path, data)

        self.call(url, put, stage="write")

    def put(self, local_path: str, url: str) -> None:
        """Copy a local file to `url` (an upload for object storage), replacing what is there."""
        fs, path = self.filesystem(url)

        def put() -> None:
            fs.makedirs(fs._parent(path), exist_ok=True)
            fs.put_file(local_path, path)

        self.call(url, put, stage="write")

    def remove(self, url: str) -> None:
        fs, path = self.filesystem(url)
        self.call(url, lambda: fs.rm_file(path), stage="write")

    def open(self, url: str, size: int | None = None) -> io.BufferedReader:
        """`url` as a seekable binary file read in ranged requests of RANGE_BLOCK bytes (PyAV opens it to
        probe or decode a video without downloading it first); `size` saves a request when known."""
        total = self.size(url) if size is None else size
        return io.BufferedReader(_RangedFile(self, url, total), RANGE_BLOCK)

    def isdir(self, url: str) -> bool:
        fs, path = self.filesystem(url)
        return bool(self.call(url, lambda: fs.isdir(path)))

    def find(self, url: str) -> list[Listed]:
        """Every file under a folder or prefix, recursively, in name order ([] when there is none)."""
        fs, path = self.filesystem(url)
        found = self.call(url, lambda: fs.find(path, detail=True))
        root = path.rstrip("/") + "/"
        remote = "://" in url
        return [
            Listed(
                fs.unstrip_protocol(p) if remote else p, p[len(root) :], int(info.get("size") or 0), file_version(info)
            )
            for p, info in sorted(found.items())
            if info.get("type") != "directory" and p.startswith(root)
        ]

    def glob(self, pattern: str) -> list[str]:
        """URLs matching a glob pattern, sorted."""
        fs, path = self.filesystem(pattern)
        found = self.call(pattern, lambda: fs.glob(path))
        return sorted(fs.unstrip_protocol(p) if "://" in pattern else p for p in found)

    def expand(self, patterns: Iterable[str]) -> tuple[list[str], list[InputError]]:
        """Shard URLs from brace lists ({000..099}, {a,b}) and globs (*, ?, [..]), in order.

        Brace lists keep their order; each glob is sorted. A glob that matches nothing is
        reported (not_found) rather than silently indexing less than was asked for.
        URLs are returned once each, in first-seen order.
        """
        urls: list[str] = []
        errors: list[InputError] = []
        for pattern in patterns:
            for candidate in braceexpand(pattern):
                if not GLOB_CHARS.search(candidate):
                    urls.append(candidate)
                    continue
                try:
                    matches = self.glob(candidate)
                except StorageError as exc:
                    errors.append(exc.record)
                    continue
                if not matches:
                    errors.append(
                        InputError(
                            kind=ErrorKind.not_found,
                            stage="index",
                            url=redact_url(candidate),
                            message="the pattern matches no file",
                            hint="check the prefix and the pattern (quote it so the shell does not expand it)",
                        )
                    )
                urls += matches
        return list(dict.fromkeys(urls)), errors
