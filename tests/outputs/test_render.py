"""Rendered overlays, sheets and legends, opened and checked pixel by pixel."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from tv3s.pipeline.outputs.masks import colorize, overlay
from tv3s.pipeline.outputs.query import connect
from tv3s.pipeline.outputs.render import (
    CAPTION_HEIGHT,
    LEGEND_WIDTH,
    ROW_HEIGHT,
    RenderError,
    RenderOptions,
    render_lowest_confidence,
    render_video,
)
from tv3s.schemas.classes import CITYSCAPES, VSPW, classes_for

from ..support.manifest_data import (
    SCENE_FRAMES,
    SCENE_H,
    SCENE_W,
    local_scene_output,
    run_info,
    scene_frames,
)

H, W, N = SCENE_H, SCENE_W, SCENE_FRAMES
RUN = run_info()


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    """A committed output over two real sources: an .mp4 file and a tar shard of PNG frames."""
    out, masks, _ = local_scene_output(tmp_path_factory.mktemp("render"), RUN)
    return out, scene_frames(), masks["still"]


def tile(sheet: np.ndarray, k: int, columns: int = 4) -> np.ndarray:
    top, left = (k // columns) * (H + CAPTION_HEIGHT) + CAPTION_HEIGHT, (k % columns) * W
    return sheet[top : top + H, left : left + W]


def legend_swatch(image: np.ndarray, left: int, row: int) -> np.ndarray:
    return image[2 + row * ROW_HEIGHT + 9, left + 11]


def test_png_sheet_shows_exact_overlays_and_a_legend_of_the_classes_present(output, tmp_path):
    out, frames, labels = output
    path = tmp_path / "still.png"
    assert render_video(connect(out), RUN.job_id, "still", path, sheet_tiles=3) == 3
    sheet = np.asarray(Image.open(path).convert("RGB"))
    palette = classes_for(5).palette_array()
    for k, t in enumerate([0, 2, 5]):  # evenly spaced over 6 frames
        assert np.array_equal(tile(sheet, k), overlay(frames[t], labels[t], palette))
    # legend: the classes present, most pixels first (2 covers most, then 0, then the box 4)
    legend_left = 3 * W
    assert [tuple(legend_swatch(sheet, legend_left, r)) for r in range(3)] == [tuple(palette[c]) for c in (2, 0, 4)]
    assert tuple(legend_swatch(sheet, legend_left, 3)) == (255, 255, 255)  # class 1 and 3 absent


def test_mp4_overlay_decodes_to_the_expected_colours(output, tmp_path):
    out, frames, labels = output
    path = tmp_path / "clip.mp4"
    assert render_video(connect(out), RUN.job_id, "clip", path, RenderOptions(fps=5)) == N
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == N and decoded[0].shape == (H, W + LEGEND_WIDTH, 3)
    palette = classes_for(5).palette_array()
    with av.open(str(out.root).rsplit("/", 1)[0] + "/clip.mp4") as container:
        sources = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    for t in (0, N - 1):
        expected = overlay(sources[t], labels[t], palette).astype(int)
        assert np.abs(decoded[t][:, :W].astype(int) - expected).mean() < 6  # H.264 at crf 18
    assert np.abs(legend_swatch(decoded[0], W, 0).astype(int) - palette[2]).max() < 40


def test_gif_masks_only_and_a_frame_range(output, tmp_path):
    out, _, labels = output
    path = tmp_path / "still.gif"
    options = RenderOptions(masks_only=True, fps=4)
    assert render_video(connect(out), RUN.job_id, "still", path, options, frames=(2, 4)) == 3
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == 250
        gif.seek(1)
        first = np.asarray(gif.convert("RGB"))
    assert np.array_equal(first[:, :W], colorize(labels[3], classes_for(5).palette_array()))


def test_lowest_confidence_sheet_orders_frames_by_mean_confidence(output, tmp_path):
    out, frames, labels = output
    path = tmp_path / "review.png"
    con = connect(out)
    assert render_lowest_confidence(con, path, 2, video_id="still") == 2
    sheet = np.asarray(Image.open(path).convert("RGB"))
    palette = classes_for(5).palette_array()
    assert np.array_equal(tile(sheet, 0), overlay(frames[5], labels[5], palette))  # the least sure
    assert np.array_equal(tile(sheet, 1), overlay(frames[4], labels[4], palette))
    confidences = con.execute("SELECT mean_confidence FROM frames WHERE video_id = 'still' ORDER BY 1").fetchall()
    assert confidences[0][0] < confidences[1][0]


def test_refusals_name_the_fix(output, tmp_path):
    out, _, _ = output
    con = connect(out)
    with pytest.raises(RenderError, match="no frames of video 'nope'"):
        render_video(con, RUN.job_id, "nope", tmp_path / "x.mp4")
    with pytest.raises(RenderError, match="ending in .mp4, .gif, .png"):
        render_video(con, RUN.job_id, "clip", tmp_path / "x.avi")
    with pytest.raises(RenderError, match="cityscapes has 19"):
        render_video(con, RUN.job_id, "clip", tmp_path / "x.png", RenderOptions(classes="cityscapes"))


def test_published_class_sets_are_picked_by_size_unless_the_model_names_its_own():
    assert classes_for(124) is VSPW and classes_for(19) is CITYSCAPES
    assert VSPW.names[0] == "wall" and VSPW.palette[0] == (120, 120, 120)
    assert CITYSCAPES.names[13] == "car" and CITYSCAPES.palette[13] == (0, 0, 142)
    own = classes_for(19, [f"n{i}" for i in range(19)], [[i, i, i] for i in range(19)])
    assert own.names[3] == "n3" and own.palette[3] == (3, 3, 3)
    assert classes_for(19, [f"class_{i}" for i in range(19)]) is CITYSCAPES  # placeholder names carry nothing


def test_the_command_line(output, tmp_path, capsys):
    from tv3s.cli import main

    out, _, _ = output
    sheet = tmp_path / "review.png"
    assert main(["render", out.url, "--lowest-confidence", "3", "--out", str(sheet), "--masks-only"]) == 0
    assert Image.open(sheet).size[0] == 3 * W + LEGEND_WIDTH
    assert main(["render", out.url, "--video", "clip", "--out", str(tmp_path / "c.gif"), "--frames", "0:1"]) == 0
    assert "(2 frames)" in capsys.readouterr().out
    assert main(["render", out.url, "--out", str(sheet)]) == 2
    assert "pass --video ID" in capsys.readouterr().err
