"""`tv3s diff`: its tables against figures computed here, with numpy, from the two outputs' decoded masks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from tv3s.lifecycle.diff import FETCH_FRAMES, DiffError, diff_outputs
from tv3s.lifecycle.diff_render import CHANGED, render_most_changed
from tv3s.lifecycle.sides import open_side
from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.masks import decode_mask_png, overlay
from tv3s.pipeline.outputs.render import CAPTION_HEIGHT
from tv3s.pipeline.storage import Store
from tv3s.schemas.classes import classes_for

from ..support.manifest_data import (
    NUM_CLASSES,
    SCENE_H,
    SCENE_W,
    commit_scene_output,
    local_scene_output,
    read_visible,
    run_info,
    sample_job,
    scene_frames,
    video_rows,
    write_job,
)

RUN = run_info()
OTHER = run_info("job-b")


def _rows(path) -> list[dict]:
    """A diff table's rows as deltalake's own reader sees them."""
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def masks(out: Output) -> dict[tuple[str, int], np.ndarray]:
    """Every committed mask of an output, decoded, by (video, frame)."""
    rows = read_visible(out, "frames").to_pylist()
    return {(r["video_id"], r["frame_index"]): decode_mask_png(r["mask_png"]) for r in rows}


def expected_iou(a: np.ndarray, b: np.ndarray) -> list[float | None]:
    ious = []
    for c in range(NUM_CLASSES):
        union = np.logical_or(a == c, b == c).sum()
        ious.append(None if union == 0 else np.logical_and(a == c, b == c).sum() / union)
    return ious


def expected_confusion(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[tuple[int, int], int]:
    counts = {}
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            n = sum(int(np.logical_and(a == i, b == j).sum()) for a, b in pairs)
            if n:
                counts[(i, j)] = n
    return counts


def assert_ious(got: list, want: list) -> None:
    assert [g is None for g in got] == [w is None for w in want]
    assert [g for g in got if g is not None] == pytest.approx([w for w in want if w is not None])


def run_diff(a: Output, b: Output, dest, job_a=None, job_b=None):
    return diff_outputs(open_side("A", a, job_a), open_side("B", b, job_b), Output(str(dest)))


def test_an_output_against_itself_agrees_everywhere_and_its_confusion_is_diagonal(tmp_path):
    out = Output(str(tmp_path / "a"))
    write_job(out, RUN, sample_job(RUN))
    summary = run_diff(out, out, tmp_path / "diff")
    frames = _rows(tmp_path / "diff" / "frames")
    assert len(frames) == 12 and {f["agreement"] for f in frames} == {1.0}
    assert {f["changed_pixels"] for f in frames} == {0} and {f["mean_iou"] for f in frames} == {1.0}
    assert all(v in (1.0, None) for f in frames for v in f["class_iou"])
    confusion = _rows(tmp_path / "diff" / "confusion")
    assert confusion and all(r["from_class"] == r["to_class"] for r in confusion)
    assert sum(r["pixels"] for r in confusion) == sum(f["width"] * f["height"] for f in frames)
    videos = _rows(tmp_path / "diff" / "videos")
    assert [(v["agreement"], v["frames_only_a"], v["frames_only_b"]) for v in videos] == [(1.0, 0, 0)] * 2
    figures = json.loads((tmp_path / "diff" / "_diff.json").read_text())
    assert figures["agreement"] == 1.0 and figures["changed_pixels"] == 0 and summary.counts.frames_compared == 12


@pytest.fixture()
def perturbed(tmp_path):
    """A: two videos of 6 frames, plus one only A has. B: the same two perturbed (video 1 labeled in its
    first segment only), plus one only B has."""
    a, b = Output(str(tmp_path / "a")), Output(str(tmp_path / "b"))
    job_a = sample_job(RUN)
    job_a["gone"] = video_rows(RUN, "gone", seed=5)
    job_b = {v: video_rows(OTHER, v, seed=s, perturbation=0.5) for s, v in enumerate(("video 0/x", "video 1/x"))}
    job_b["video 1/x"].pop(1)
    job_b["new"] = video_rows(OTHER, "new", seed=6)
    write_job(a, RUN, job_a)
    write_job(b, OTHER, job_b)
    return a, b


def test_figures_equal_an_independent_computation_from_the_decoded_masks(perturbed, tmp_path):
    a, b = perturbed
    summary = run_diff(a, b, tmp_path / "diff")
    masks_a, masks_b = masks(a), masks(b)
    common = sorted(set(masks_a) & set(masks_b))
    assert len(common) == 9  # video 0: 6 frames, video 1: its first 3
    frames = {(f["video_id"], f["frame_index"]): f for f in _rows(tmp_path / "diff" / "frames")}
    assert sorted(frames) == common
    for key in common:
        ma, mb = masks_a[key], masks_b[key]
        assert frames[key]["agreement"] == pytest.approx((ma == mb).mean())
        assert frames[key]["changed_pixels"] == int((ma != mb).sum())
        assert_ious(frames[key]["class_iou"], expected_iou(ma, mb))
    assert 0.3 < min(f["agreement"] for f in frames.values()) < 0.99  # perturbed, not unrelated or equal

    videos = {v["video_id"]: v for v in _rows(tmp_path / "diff" / "videos")}
    counts = {
        v: (r["frames_a"], r["frames_b"], r["frames_compared"], r["frames_only_a"], r["frames_only_b"])
        for v, r in videos.items()
    }
    assert counts == {
        "video 0/x": (6, 6, 6, 0, 0),
        "video 1/x": (6, 3, 3, 3, 0),
        "gone": (6, 0, 0, 6, 0),
        "new": (0, 6, 0, 0, 6),
    }
    assert videos["gone"]["agreement"] is None and videos["new"]["pixels"] == 0
    confusion = _rows(tmp_path / "diff" / "confusion")
    for video_id in ("video 0/x", "video 1/x"):
        pairs = [(masks_a[k], masks_b[k]) for k in common if k[0] == video_id]
        got = {(r["from_class"], r["to_class"]): r["pixels"] for r in confusion if r["video_id"] == video_id}
        assert got == expected_confusion(pairs)
        stacked_a, stacked_b = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        assert videos[video_id]["agreement"] == pytest.approx((stacked_a == stacked_b).mean())
        assert_ious(videos[video_id]["class_iou"], expected_iou(stacked_a, stacked_b))
    assert {r["video_id"] for r in confusion} == {"video 0/x", "video 1/x"}

    pairs = [(masks_a[k], masks_b[k]) for k in common]
    figures = json.loads((tmp_path / "diff" / "_diff.json").read_text())
    matrix = np.array(figures["confusion"])
    assert {(i, j): int(n) for (i, j), n in np.ndenumerate(matrix) if n} == expected_confusion(pairs)
    assert figures["videos"] == {"both": 2, "only_a": 1, "only_b": 1}
    assert (figures["frames_compared"], figures["frames_only_a"], figures["frames_only_b"]) == (9, 9, 6)
    all_a, all_b = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    assert figures["agreement"] == pytest.approx((all_a == all_b).mean())
    assert figures["min_frame_agreement"] == min(f["agreement"] for f in frames.values())
    assert summary.counts.frames_compared == 9


def test_a_long_video_streams_in_chunks_and_compares_every_frame(tmp_path):
    a, b = Output(str(tmp_path / "a")), Output(str(tmp_path / "b"))
    frames = FETCH_FRAMES + 5
    write_job(a, RUN, {"long": video_rows(RUN, "long", segments=1, per_segment=frames)})
    write_job(b, OTHER, {"long": video_rows(OTHER, "long", segments=1, per_segment=frames, perturbation=0.5)})
    run_diff(a, b, tmp_path / "diff")
    masks_a, masks_b = masks(a), masks(b)
    rows = sorted(_rows(tmp_path / "diff" / "frames"), key=lambda r: r["frame_index"])
    assert [r["frame_index"] for r in rows] == list(range(frames))
    assert [r["changed_pixels"] for r in rows] == [int((masks_a[k] != masks_b[k]).sum()) for k in sorted(masks_a)]


def test_refusals_name_the_fix(perturbed, tmp_path):
    a, b = perturbed
    four = Output(str(tmp_path / "four"))
    write_job(four, run_info("job-4", 4), {"video 0/x": video_rows(run_info("job-4", 4), "video 0/x")})
    with pytest.raises(DiffError, match="A labels 5 classes and B 4"):
        run_diff(a, four, tmp_path / "d1")
    renamed = Output(str(tmp_path / "renamed"))
    names = replace(run_info("job-r"), class_names=tuple(f"n{i}" for i in range(5)))
    write_job(renamed, names, {"video 0/x": video_rows(names, "video 0/x")})
    with pytest.raises(DiffError, match="class 0 is 'class_0' in A but 'n0' in B"):
        run_diff(a, renamed, tmp_path / "d2")
    run_diff(a, b, tmp_path / "d3")
    with pytest.raises(DiffError, match="not empty; write the diff to a new --out"):
        run_diff(a, b, tmp_path / "d3")
    small = Output(str(tmp_path / "small"))
    write_job(small, OTHER, {"video 0/x": video_rows(OTHER, "video 0/x", size=(12, 16))})
    with pytest.raises(DiffError, match="32x24 in A but 16x12 in B"):
        run_diff(a, small, tmp_path / "d4")


@pytest.fixture()
def scenes(tmp_path):
    """The scene labeled twice over the same sources: B's box two cells further right."""
    a, masks_a, urls = local_scene_output(tmp_path, RUN)
    b = Output(str(tmp_path / "b"))
    masks_b = commit_scene_output(b, OTHER, urls, shift=2)
    return a, b, masks_a, masks_b


def tiles(sheet: np.ndarray) -> list[np.ndarray]:
    top = CAPTION_HEIGHT
    return [sheet[top : top + SCENE_H, k * SCENE_W : (k + 1) * SCENE_W] for k in range(3)]


def test_sheets_show_a_b_and_the_changed_pixels_of_the_most_changed_frames(scenes, tmp_path):
    a, b, masks_a, masks_b = scenes
    side_a, side_b = open_side("A", a, None), open_side("B", b, None)
    dest = Output(str(tmp_path / "diff"))
    diff_outputs(side_a, side_b, dest)
    palette = classes_for(NUM_CLASSES).palette_array()
    ranked = sorted(((masks_a[v][t] == masks_b[v][t]).mean(), v, t) for v in masks_a for t in masks_a[v])
    paths = render_most_changed(side_a, side_b, dest, side_a.classes(), 2, True, Store())
    assert paths == [str(tmp_path / "diff" / "most-changed" / f"{k:03d}.png") for k in range(2)]
    for path, (_, video_id, t) in zip(paths, ranked):
        first, second, changed = tiles(np.asarray(Image.open(path).convert("RGB")))
        la, lb = masks_a[video_id][t], masks_b[video_id][t]
        assert np.array_equal(first, palette[la]) and np.array_equal(second, palette[lb])
        assert (la != lb).any()
        assert np.array_equal(np.all(changed == CHANGED, axis=2), la != lb)


def test_sheets_over_the_source_frames(scenes, tmp_path):
    a, b, masks_a, masks_b = scenes
    side_a, side_b = open_side("A", a, None), open_side("B", b, None)
    dest = Output(str(tmp_path / "diff"))
    diff_outputs(side_a, side_b, dest)
    ranked = sorted(((masks_a[v][t] == masks_b[v][t]).mean(), v, t) for v in masks_a for t in masks_a[v])
    assert ranked[1][1] == "still"  # equal agreement in both videos: clip first, then still (a PNG: exact pixels)
    (path,) = render_most_changed(side_a, side_b, dest, side_a.classes(), 2, False, Store())[1:]
    first, second, _ = tiles(np.asarray(Image.open(path).convert("RGB")))
    t, palette = ranked[1][2], classes_for(NUM_CLASSES).palette_array()
    assert np.array_equal(first, overlay(scene_frames()[t], masks_a["still"][t], palette))
    assert np.array_equal(second, overlay(scene_frames()[t], masks_b["still"][t], palette))


def test_the_command_line_and_tv3s_query_over_the_diff(perturbed, tmp_path, capsys):
    from tv3s.cli import main

    a, b = perturbed
    dest = str(tmp_path / "diff")
    assert main(["diff", a.url, b.url, "--out", dest]) == 0
    out = capsys.readouterr().out
    assert "videos: 2 on both sides, 1 only in A, 1 only in B" in out
    assert "frames compared: 9 (9 only in A, 6 only in B)" in out and " -> " in out
    sql = "SELECT sum(pixels)::BIGINT AS p FROM confusion WHERE from_class <> to_class"
    assert main(["query", dest, sql, "--format", "json"]) == 0
    changed = json.loads(capsys.readouterr().out)["p"]
    assert changed == json.loads((tmp_path / "diff" / "_diff.json").read_text())["changed_pixels"] > 0
    assert main(["query", dest, "SELECT count(*) AS n FROM frames", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 9
    assert main(["diff", a.url, b.url, "--out", dest]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(["diff", a.url, b.url, "--out", str(tmp_path / "d2"), "--job-b", "nope"]) == 2
    assert "job 'nope' has no frames" in capsys.readouterr().err


def test_a_diff_of_outputs_on_the_object_store_into_the_object_store(s3, tmp_path, monkeypatch, capsys):
    from deltalake import DeltaTable

    from tv3s.cli import main

    videos = ("video 0/x", "video 1/x")
    job_a = {v: video_rows(RUN, v, seed=s) for s, v in enumerate(videos)}
    job_b = {v: video_rows(OTHER, v, seed=s, perturbation=0.5) for s, v in enumerate(videos)}
    bucket = s3.make_bucket("tv3s-diff")
    a, b = Output(f"{bucket}/a", s3.storage_options), Output(f"{bucket}/b", s3.storage_options)
    write_job(a, RUN, job_a)
    write_job(b, OTHER, job_b)
    dest = Output(f"{bucket}/diff", s3.storage_options)
    side_a, side_b = open_side("A", a, None), open_side("B", b, None)
    summary = diff_outputs(side_a, side_b, dest)
    (path,) = render_most_changed(side_a, side_b, dest, side_a.classes(), 1, True, Store(s3.storage_options))
    assert path == f"{bucket}/diff/most-changed/000.png"
    local_a, local_b = Output(str(tmp_path / "a")), Output(str(tmp_path / "b"))
    write_job(local_a, RUN, job_a)
    write_job(local_b, OTHER, job_b)
    run_diff(local_a, local_b, tmp_path / "local")  # the same rows on local disk
    rows = DeltaTable(dest.table_uri("frames"), storage_options=dest.delta_options()).to_pyarrow_table().to_pylist()
    local = {(r["video_id"], r["frame_index"]): r["agreement"] for r in _rows(tmp_path / "local" / "frames")}
    assert {(r["video_id"], r["frame_index"]): r["agreement"] for r in rows} == local and len(local) == 12
    assert json.loads(dest.read("_diff.json"))["agreement"] == summary.to_json()["agreement"]
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    sql = "SELECT sum(pixels)::BIGINT AS p FROM confusion"
    assert main(["query", dest.url, sql, "--format", "json", "--endpoint-url", s3.endpoint_url]) == 0
    assert json.loads(capsys.readouterr().out)["p"] == summary.to_json()["pixels"]
