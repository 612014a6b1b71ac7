"""The output tables' schemas: defined once, documented, mirrored by FrameRow, round-tripping Parquet."""

from __future__ import annotations

import io
import types
import typing

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tv3s.pipeline.outputs.manifest import FrameSource, VideoLabeler, encode_parquet
from tv3s.pipeline.outputs.masks import decode_mask_png, logits_to_labels
from tv3s.schemas.errors import InputError
from tv3s.schemas.manifest import (
    ERRORS_SCHEMA,
    FRAMES_SCHEMA,
    SCHEMA_VERSION,
    TABLES,
    VERSION_KEY,
    FrameRow,
    ResetReason,
    TemporalState,
    check_schema,
    frames_table,
)

from ..support.manifest_data import run_info, video_rows


def test_frame_row_mirrors_the_frames_schema():
    assert list(FrameRow.model_fields) == FRAMES_SCHEMA.names
    for name, info in FrameRow.model_fields.items():
        optional = isinstance(info.annotation, types.UnionType) and type(None) in typing.get_args(info.annotation)
        assert FRAMES_SCHEMA.field(name).nullable == optional, name


def test_errors_table_is_the_input_error_record_plus_the_job():
    assert ERRORS_SCHEMA.names == ["job_id", *InputError.model_fields]
    assert ERRORS_SCHEMA.field("member").nullable and not ERRORS_SCHEMA.field("kind").nullable


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_column_is_documented_and_the_schema_is_versioned(table):
    schema = TABLES[table]
    for field in schema:
        assert len(field.metadata[b"description"]) > 10, field.name
    assert check_schema(schema, "here") == table
    with pytest.raises(ValueError, match="schema version '99'"):
        check_schema(schema.with_metadata({**schema.metadata, VERSION_KEY: b"99"}), "part.parquet")
    with pytest.raises(ValueError, match="not a tv3s output part"):
        check_schema(pa.schema([("a", pa.int32())]), "other.parquet")


def test_rows_round_trip_through_parquet_unchanged():
    rows = video_rows(run_info(), "v", segments=1, per_segment=3)[0]
    table = frames_table(rows)
    back = pq.read_table(io.BytesIO(encode_parquet(table)))
    assert back.schema.equals(FRAMES_SCHEMA, check_metadata=True)
    assert back.to_pylist() == table.to_pylist()
    assert back.schema.metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()
    parsed = [FrameRow.model_validate(r) for r in back.to_pylist()]
    assert parsed == rows


def test_the_labeler_uses_the_official_rule_and_tracks_adjacent_frames():
    run = run_info(num_classes=300)  # > 255 classes: 16-bit masks
    labeler = VideoLabeler(run)
    logits = torch.randn(300, 5, 6, generator=torch.Generator().manual_seed(0))

    def source(index: int, **state) -> FrameSource:
        return FrameSource("v", 0, index, "file:///v.mp4", 23, 19, **state)

    first, labels = labeler.label(
        logits, source(0, temporal_state=TemporalState.reset, state_reset_reason=ResetReason.video_start)
    )
    assert np.array_equal(labels, logits_to_labels(logits, (19, 23))) and labels.dtype == np.uint16
    assert np.array_equal(decode_mask_png(first.mask_png), labels)
    assert first.temporal_agreement is None and sum(first.class_histogram) == 19 * 23
    second, _ = labeler.label(logits, source(1))
    assert second.temporal_agreement == 1.0
    after_gap, _ = labeler.label(logits, source(5))
    assert after_gap.temporal_agreement is None


def test_inconsistent_rows_are_refused():
    row = video_rows(run_info(), "v", segments=1, per_segment=1)[0][0]
    data = row.model_dump()
    with pytest.raises(ValueError, match="state_reset_reason"):
        FrameRow(**{**data, "state_reset_reason": None})
    with pytest.raises(ValueError, match="counts"):
        FrameRow(**{**data, "class_histogram": [1, 2, 3, 4, 5]})
    with pytest.raises(ValueError, match="warmup_frames"):
        FrameRow(**{**data, "temporal_state": "warmed_up", "state_reset_reason": None})


def test_parts_compress_every_column_but_the_already_compressed_masks():
    rows = video_rows(run_info(), "v", segments=1, per_segment=2)[0]
    meta = pq.ParquetFile(io.BytesIO(encode_parquet(frames_table(rows)))).metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert columns["mask_png"].compression == "UNCOMPRESSED" and not columns["mask_png"].is_stats_set
    assert columns["class_histogram.list.element"].compression == "ZSTD"  # nested columns too
    assert columns["video_id"].compression == "ZSTD" and columns["video_id"].is_stats_set
