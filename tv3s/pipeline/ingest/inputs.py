"""What a job (or `tv3s index`, `tv3s segment`) is given to label, sorted out and indexed as one table.

An input list may mix WebDataset shards and raw media: each entry (after brace lists and
globs are expanded) is a shard when it ends in .tar, a video or image file when its
extension says so, and otherwise a folder or s3:// prefix whose files make videos by the
`sources` rule. Shards are indexed by their tar headers (`index`), raw files by probing them
(`media_index`); both give rows of the one index schema, so planning and reading do not
care which they came from. An entry that names nothing usable is an error record, never
silently nothing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from ...schemas.errors import ErrorKind, InputError
from ..storage import Listed, StorageError, Store, redact_url
from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .index import IndexResult, index_shard_urls
from .media_index import index_media
from .samples import DEFAULT_KEY_PATTERN
from .sources import SourceVideo, discover, media_type, single_file

SHARD_EXTENSION = ".tar"
MEDIA = ", ".join(sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))


@dataclass
class Inputs:
    """Entries sorted out: shard URLs, raw videos (files grouped by the folder rule), and errors."""

    shards: list[str] = field(default_factory=list)
    videos: list[SourceVideo] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)


def resolve_inputs(patterns: Iterable[str], store: Store) -> Inputs:
    """Every entry expanded (brace lists, globs) and told apart: shard, media file, or folder."""
    urls, errors = store.expand(patterns)
    inputs = Inputs(errors=errors)
    for url in urls:
        try:
            _add(url, inputs, store)
        except StorageError as exc:
            inputs.errors.append(exc.record.model_copy(update={"stage": "index"}))
    inputs.shards = list(dict.fromkeys(inputs.shards))
    return inputs


def _add(url: str, inputs: Inputs, store: Store) -> None:
    if url.lower().endswith(SHARD_EXTENSION):
        inputs.shards.append(url)
    elif media_type(url) is not None:
        try:
            inputs.videos.append(single_file(Listed(url, posixpath.basename(url), *store.stat(url))))
        except StorageError as exc:
            missing = exc.record.kind == ErrorKind.not_found
            inputs.errors.append(_nothing_there(url, "no such file") if missing else exc.record)
    else:
        try:
            videos, errors = discover(url, store)
        except FileNotFoundError:
            videos, errors = [], [_nothing_there(url, "not a shard (.tar), a video or image file, nor a folder")]
        if not videos and not errors:
            errors = [_nothing_there(url, "the folder holds no video files and no images")]
        inputs.videos += videos
        inputs.errors += errors


def _nothing_there(url: str, what: str) -> InputError:
    return InputError(
        kind=ErrorKind.not_found,
        stage="index",
        url=redact_url(url),
        message=f"nothing to label: {what}",
        hint=f"name shards (.tar), video or image files ({MEDIA}), or folders or s3:// prefixes of them",
    )


def index_inputs(
    patterns: Iterable[str],
    store: Store,
    key_pattern: str = DEFAULT_KEY_PATTERN,
    workers: int = 8,
    progress: bool = False,
    ray_from: int | None = None,
) -> IndexResult:
    """The index of every entry: shards scanned (as Ray tasks from `ray_from` shards, see `build_index`),
    raw files probed (files counted as shards and members)."""
    inputs = resolve_inputs(patterns, store)
    result = index_shard_urls(inputs.shards, store, key_pattern, workers, progress, inputs.errors, ray_from)
    if not inputs.videos:
        return result
    table, errors = index_media(inputs.videos, store, len(inputs.shards), workers)
    files = sum(len(v.files) for v in inputs.videos)
    return IndexResult(
        pa.concat_tables([result.table, table]), result.errors + errors, result.shards + files, result.members + files
    )
