"""SQL over an output's tables: DuckDB views `frames`, `videos`, `errors`, `units` over the Delta tables.

Each view scans its table's current snapshot (`DeltaTable.to_pyarrow_dataset()`): exactly the
committed rows, read lazily with column and filter pushdown, on local disk and object stores
alike (delta-rs reads the files; DuckDB needs no httpfs extension and sees no paths).

Read-only, twice over: only SELECT (and EXPLAIN of one) is accepted, and before the
user's SQL runs DuckDB is told to access no files at all and to refuse any configuration
change afterwards, so even a statement that slipped through could not write anywhere.

A predicate (`tv3s export --where`) is not a statement: `parse_predicate` admits only
one condition on a frames row, which can narrow the rows it filters and do nothing else.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ...schemas.manifest import TABLES
from .commit import Output

FORMATS = ("table", "csv", "json", "parquet")
_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_FILES_HINT = f". A query reads only the output's tables {', '.join(TABLES)}: no file, local or remote, can be read"
_PREDICATE_HOST = "SELECT * FROM frames"  # the statement a predicate is parsed in, as its WHERE
_PREDICATE_EXAMPLE = "e.g. \"mean_confidence > 0.9 AND video_id LIKE 'cam%'\""


class QueryError(ValueError):
    """The SQL is refused or fails; the message says why and what to write instead."""


def connect(output: Output) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the output's tables, locked to reading them."""
    con = duckdb.connect(":memory:")
    for name, schema in TABLES.items():
        con.register(name, output.dataset(name, schema))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The result of one read-only statement, as an Arrow table."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse the SQL: {exc}") from exc
    if len(statements) != 1:
        raise QueryError(f"give exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in _ALLOWED or (kind == duckdb.StatementType.EXPLAIN and not _explains_a_select(con, sql)):
        what = (
            "EXPLAIN of anything but a SELECT is"
            if kind == duckdb.StatementType.EXPLAIN
            else f"{kind.name} statements are"
        )
        raise QueryError(
            f"outputs are read-only: {what} refused. Use SELECT over "
            f"{', '.join(TABLES)}, and --format/--out to save the result elsewhere"
        )
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        hint = _FILES_HINT if "disabled by configuration" in str(exc) else ""
        raise QueryError(f"{exc}{hint}") from exc


def _explains_a_select(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """Whether an EXPLAIN [ANALYZE] [(options)] statement explains one SELECT.

    EXPLAIN ANALYZE runs the statement it explains, so that one must be read-only too. DuckDB does not say
    which statement an EXPLAIN holds; the text after EXPLAIN and ANALYZE is parsed on its own, first whole
    (a parenthesized SELECT), then after an options list. What cannot be told apart is refused.
    """
    found = duckdb.tokenize(sql)
    ends = [offset for offset, _ in found[1:]] + [len(sql)]
    words = [(o, sql[o:e].strip().upper()) for (o, kind), e in zip(found, ends) if kind != duckdb.token_type.comment]
    rest = words[1:]
    if rest and rest[0][1] == "ANALYZE":
        rest = rest[1:]
    if rest and _is_one_select(con, sql[rest[0][0] :]):
        return True
    if not rest or rest[0][1] != "(":
        return False
    depth = 0
    for position, (_, word) in enumerate(rest):
        depth += word.count("(") - word.count(")")
        if depth == 0:
            return position + 1 < len(rest) and _is_one_select(con, sql[rest[position + 1][0] :])
    return False


def _is_one_select(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error:
        return False
    return len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT


def resolve_job(con: duckdb.DuckDBPyConnection, job_id: str | None) -> str:
    """The job to work on: the one given (which must have frames), or the output's only one."""
    jobs = [j for (j,) in con.sql("SELECT DISTINCT job_id FROM frames ORDER BY 1").fetchall()]
    if job_id is not None and job_id in jobs:
        return job_id
    if job_id is not None:
        raise QueryError(f"job {job_id!r} has no frames in this output; it has: {', '.join(jobs) or 'none'}")
    if len(jobs) == 1:
        return jobs[0]
    if not jobs:
        raise QueryError("the output has no committed frames yet")
    listed = ", ".join(jobs[:5]) + (", ..." if len(jobs) > 5 else "")
    raise QueryError(f"the output holds {len(jobs)} jobs ({listed}); pass --job")


def parse_predicate(text: str) -> duckdb.Expression:
    """`text` as one condition on a frames row, for `relation.filter`; QueryError unless it is exactly that.

    The text comes from the command line and is spliced into SQL, so it must not reshape the statement it
    lands in. DuckDB's parser reads it as the WHERE of a fixed SELECT (the text is a bound value of
    json_serialize_sql, which parses and runs nothing). The parse must be that SELECT and its WHERE alone: no
    second statement, set operation or clause after the condition, and parentheses that balance within the
    text. Inside the condition, no subquery (it could read other tables, or files through table functions)
    and no parameter marker (it would take the value meant for one of the caller's).
    """
    if not text.strip():
        raise QueryError(f"the predicate is empty; write a condition on the frames columns, {_PREDICATE_EXAMPLE}")
    node = _parse_select(f"{_PREDICATE_HOST} WHERE {text}\n")
    if node["type"] != "SELECT_NODE":
        raise QueryError(
            "the predicate holds a set operation (UNION, INTERSECT or EXCEPT); it only filters the job's frames: "
            f"join conditions with AND / OR instead, {_PREDICATE_EXAMPLE}"
        )
    _refuse_subqueries_and_parameters(node["where_clause"])
    if {**node, "where_clause": None} != _parse_select(_PREDICATE_HOST):
        raise QueryError(
            "the predicate holds clauses after the condition (ORDER BY, LIMIT, GROUP BY, HAVING, QUALIFY, USING "
            f"SAMPLE); give the condition alone, {_PREDICATE_EXAMPLE}"
        )
    try:
        return duckdb.SQLExpression(text)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse the predicate: {exc}") from exc


def _parse_select(sql: str) -> dict:
    """DuckDB's parse of `sql`, which must be one SELECT, as its JSON tree; nothing is run."""
    with duckdb.connect(":memory:") as con:
        try:
            count = len(con.extract_statements(sql))
        except duckdb.Error as exc:
            raise QueryError(f"cannot parse the predicate: {exc}; write one condition, {_PREDICATE_EXAMPLE}") from exc
        if count != 1:
            raise QueryError(f"the predicate holds {count} statements; write one condition, {_PREDICATE_EXAMPLE}")
        ((serialized,),) = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree = json.loads(serialized)
    if tree["error"]:
        raise QueryError(
            f"cannot parse the predicate: {tree['error_message']}; write one condition, {_PREDICATE_EXAMPLE}"
        )
    return tree["statements"][0]["node"]


def _refuse_subqueries_and_parameters(where: dict) -> None:
    """QueryError if the condition holds a subquery or a parameter marker anywhere in it."""
    for node in _tree_nodes(where):
        if node.get("class") == "SUBQUERY":
            raise QueryError(
                "the predicate holds a subquery (SELECT ...): a predicate is a condition on one frames row and "
                "cannot read other rows, tables or files; select with `tv3s query` first and write the values "
                "you found into the condition, e.g. \"video_id IN ('cam1', 'cam2')\""
            )
        if node.get("class") == "PARAMETER":
            raise QueryError("the predicate holds a parameter marker (? or $name); write the value itself instead")


def _tree_nodes(tree: object) -> Iterator[dict]:
    """Every JSON object in a parse tree, depth first."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _tree_nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _tree_nodes(value)


# --- presenting results -------------------------------------------------------------------


def format_table(table: pa.Table, max_rows: int = 50, max_width: int = 40) -> str:
    """A plain-text table for the terminal; binary cells (masks) shown as their size."""
    shown = table.slice(0, max_rows).to_pylist()
    header = table.column_names
    cells = [[_cell(row[name], max_width) for name in header] for row in shown]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more rows (use --max-rows, or --format csv/json/parquet)")
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out)


def write_result(table: pa.Table, fmt: str, dest: Path | None) -> str | None:
    """Write a result as csv, json (one object per line) or parquet to `dest`; csv/json
    without `dest` are returned as text. Binary cells become base64 in csv and json."""
    if fmt == "parquet":
        if dest is None:
            raise QueryError("--format parquet needs --out FILE")
        pq.write_table(table, dest)
        return None
    if fmt == "csv":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(_text_friendly(table), sink)
        text = sink.getvalue().to_pybytes().decode()
    elif fmt == "json":
        text = "".join(json.dumps(row, default=_json_default) + "\n" for row in table.to_pylist())
    else:
        raise QueryError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if dest is None:
        return text
    dest.write_text(text)
    return None


def _text_friendly(table: pa.Table) -> pa.Table:
    """CSV has no binary or list cells: base64 for binary, JSON text for nested values."""
    columns = []
    for column, f in zip(table.columns, table.schema, strict=True):
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            column = pa.array([None if v is None else base64.b64encode(v).decode() for v in column.to_pylist()])
        elif pa.types.is_nested(f.type):
            column = pa.array([None if v is None else json.dumps(v, default=_json_default) for v in column.to_pylist()])
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _cell(value: object, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list) and len(value) > 6:
        text = "[" + ", ".join(str(v) for v in value[:4]) + f", ... ({len(value)})]"
    else:
        text = str(value)
    return text if len(text) <= max_width else text[: max_width - 3] + "..."
