"""SQL over the Delta tables with DuckDB, local and on the S3 server: only committed rows, read-only."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest

from tv3s.cli import main
from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.query import QueryError, connect, format_table, run_query, write_result

from ..support.cli import run_into_closed_pipe
from ..support.manifest_data import run_info, sample_job, write_job

RUN = run_info()


@pytest.fixture(scope="module")
def job():
    return sample_job(RUN)


@pytest.fixture(scope="module", params=["local", "s3"])
def output(request, tmp_path_factory, job):
    if request.param == "local":
        out = Output(str(tmp_path_factory.mktemp("query") / "out"))
    else:
        s3 = request.getfixturevalue("s3")
        out = Output(f"{s3.make_bucket('tv3s-query')}/{uuid.uuid4().hex}", s3.storage_options)
    write_job(out, RUN, job)
    # a crashed attempt's complete-looking file that the Delta log does not list: must stay invisible
    committed = "frames/" + out.table("frames").file_uris()[0].rsplit("/frames/", 1)[1]
    out.write_once(committed.replace(".parquet", ".crashed.parquet"), out.read(committed))
    return out


def test_tables_hold_exactly_the_committed_rows(output, job):
    con = connect(output)
    rows = [r for segs in job.values() for rs in segs.values() for r in rs]
    counts = run_query(con, "SELECT count(*) AS n, count(DISTINCT (video_id, frame_index)) AS d FROM frames")
    assert counts.to_pylist() == [{"n": len(rows), "d": len(rows)}]
    # SQL lists are 1-based: class k is class_histogram[k + 1]
    total = run_query(con, "SELECT sum(class_histogram[1]) AS c0 FROM frames").column("c0")[0].as_py()
    assert total == sum(r.class_histogram[0] for r in rows)
    videos = run_query(con, "SELECT video_id, frames, errors FROM videos ORDER BY video_id").to_pylist()
    assert videos == [{"video_id": v, "frames": 6, "errors": 1} for v in sorted(job)]
    errors = run_query(con, "SELECT kind, segment_index FROM errors").to_pylist()
    assert errors == [{"kind": "corrupt_member", "segment_index": 1}] * 2
    low = run_query(con, "SELECT video_id, frame_index FROM frames ORDER BY mean_confidence LIMIT 1").to_pylist()[0]
    assert low["frame_index"] == min(rows, key=lambda r: r.mean_confidence).frame_index


@pytest.mark.parametrize(
    "sql",
    [
        "COPY frames TO 'stolen.csv'",
        "CREATE TABLE x AS SELECT 1",
        "DROP VIEW frames",
        "ATTACH 'other.db'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SELECT 1; SELECT 2",
        "PRAGMA database_list",
        "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1",
        "EXPLAIN ANALYZE COPY frames TO 'stolen.csv'",
        "EXPLAIN /* c */ ANALYZE (FORMAT json) CREATE TABLE x AS SELECT 1",
    ],
)
def test_anything_but_one_select_is_refused(output, sql):
    con = connect(output)
    with pytest.raises(QueryError):
        run_query(con, sql)
    assert run_query(con, "SHOW TABLES").column("name").to_pylist() == ["errors", "frames", "units", "videos"]


@pytest.mark.parametrize(
    "sql", ["EXPLAIN SELECT count(*) FROM frames", "EXPLAIN ANALYZE (SELECT 1)", "EXPLAIN (FORMAT json) FROM videos"]
)
def test_explain_of_a_select_is_answered(output, sql):
    assert run_query(connect(output), sql).num_rows >= 1


def test_files_outside_the_view_cannot_be_read(output):
    con = connect(output)
    stray = next(f.path for f in output.list("frames") if ".crashed." in f.path)
    for sql in (
        f"SELECT count(*) FROM read_parquet('{output.uri(stray)}')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM 'stolen.csv'",
        "EXPLAIN SELECT * FROM read_csv('/etc/passwd')",
    ):
        with pytest.raises(QueryError, match="disabled by configuration") as refused:
            run_query(con, sql)
        assert "reads only the output's tables frames, videos, errors" in str(refused.value)
        assert "root:" not in str(refused.value)


def test_result_formats(output, tmp_path):
    sql = "SELECT video_id, frame_index, class_histogram, mask_png FROM frames ORDER BY 1, 2"
    table = run_query(connect(output), sql)
    rows = list(csv.DictReader(io.StringIO(write_result(table, "csv", None))))
    assert len(rows) == table.num_rows and json.loads(rows[0]["class_histogram"]) == table.column(2)[0].as_py()
    lines = write_result(table, "json", None).splitlines()
    assert json.loads(lines[1])["frame_index"] == table.column("frame_index")[1].as_py()
    write_result(table, "parquet", tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").equals(table)
    text = format_table(table, max_rows=2)
    assert "bytes>" in text and "more rows" in text and f"({table.num_rows} rows)" in text


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path, job):
    output = Output(str(tmp_path / "out"))
    write_job(output, RUN, job)
    for fmt in ("table", "csv"):
        done = run_into_closed_pipe("query", output.url, "SELECT * FROM frames", "--format", fmt)
        assert (done.returncode, done.stderr) == (141, "")


def test_an_output_without_commits_has_empty_tables(tmp_path):
    con = connect(Output(str(tmp_path / "empty")))
    for table in ("frames", "videos", "errors"):
        assert run_query(con, f"SELECT count(*) AS n FROM {table}").to_pylist() == [{"n": 0}]


def test_the_command_line(output, capsys, monkeypatch, tmp_path):
    args = [output.url]
    if not output.local:
        options = output.fs.storage_options
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
        args += ["--endpoint-url", options["client_kwargs"]["endpoint_url"]]
    assert main(["query", *args, "SELECT count(*) AS n FROM frames"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n ", "--", "12", "(1 row)"]
    assert main(["query", *args, "SELECT video_id FROM videos ORDER BY 1", "--format", "json"]) == 0
    assert [json.loads(x)["video_id"] for x in capsys.readouterr().out.splitlines()] == ["video 0/x", "video 1/x"]
    assert main(["query", *args, "DELETE FROM frames"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert main(["query", *args, "SELECT 1", "--format", "parquet"]) == 2
    capsys.readouterr()
    for sql in (
        "SELECT * FROM glob('/*')",
        "ATTACH 'x.db'",
        "COPY frames TO 'x.csv'",
        "PRAGMA version",
        "SET threads = 1",
    ):
        assert main(["query", *args, sql]) == 2
        refused = capsys.readouterr()
        assert refused.out == "" and refused.err.startswith("tv3s query: error: ") and "Traceback" not in refused.err
