"""Derived results as Delta tables beside each other under one folder or prefix, and SQL over them.

A diff is read the way a labeling output is: Delta tables any engine opens, queried with
`tv3s query`. Rows are appended in batches (`TableWriter`), so a diff of millions of frames
holds a batch of small rows, never the whole table; the location is an `Output`, so local
folders and object stores (with their credentials and endpoint) work alike.
"""

from __future__ import annotations

import duckdb
import fsspec
import pyarrow as pa

from ..pipeline.outputs.commit import Output
from ..schemas.manifest import TABLES

BATCH_ROWS = 10_000


def field(name: str, type_: pa.DataType, description: str, nullable: bool = False) -> pa.Field:
    """A column with its meaning in the metadata, as the labeling tables document theirs."""
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


class TableWriter:
    """Appends rows to the Delta table `name` under `dest`, `batch` rows per commit.

    The table is created on the first flush, empty if no row ever came, so a reader finds
    every table of a finished result even where one has no rows.
    """

    def __init__(self, dest: Output, name: str, schema: pa.Schema, batch: int = BATCH_ROWS) -> None:
        self.dest, self.name, self.schema, self.batch = dest, name, schema, batch
        self._rows: list[dict] = []
        self._created = False

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        from deltalake import write_deltalake

        if self._rows or not self._created:
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            uri = self.dest.table_uri(self.name)
            write_deltalake(uri, table, mode="append", storage_options=self.dest.delta_options())
            self._rows, self._created = [], True


def is_used(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """Whether a destination already holds something: results go to new locations, since rows or files
    added to an earlier result would mix the two."""
    return bool(fs.exists(path) and fs.ls(path, detail=False))


def other_tables(output: Output) -> list[str]:
    """Names of the Delta tables directly under the output's root besides the labeling tables."""
    try:
        entries = output.fs.ls(output.root, detail=False)
    except FileNotFoundError:
        return []
    names = sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
    return [n for n in names if n not in TABLES and output.fs.exists(output.full(f"{n}/_delta_log"))]


def register_other_tables(con: duckdb.DuckDBPyConnection, output: Output) -> list[str]:
    """Make the output's other Delta tables (a diff's `confusion`) queryable on `con`; their names.

    Registering an Arrow dataset reads no file through DuckDB, so it works on a connection
    already locked to its registered tables (`query.connect`).
    """
    names = other_tables(output)
    for name in names:
        con.register(name, output.table(name).to_pyarrow_dataset())
    return names


def connect_tables(output: Output, names: list[str]) -> duckdb.DuckDBPyConnection:
    """DuckDB over the Delta tables `names` of `output`, locked to reading them like `query.connect`."""
    con = duckdb.connect(":memory:")
    for name in names:
        con.register(name, output.table(name).to_pyarrow_dataset())
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
