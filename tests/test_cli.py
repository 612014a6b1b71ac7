"""`tv3s segment` and `tv3s demo` end to end with the tiny parity model (MiT-B0, 7 classes).

Clips are kept to a few small frames: the runner's logic is covered in depth by
test_segment.py / test_predict.py; here the point is that the model, the
checkpoint and the CLI fit together.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tv3s.cli import main
from tv3s.pipeline.outputs.masks import decode_mask_png
from tv3s.pipeline.outputs.video_write import write_video

from .support.clips import generate_demo_clip
from .support.fixtures import FIXTURES

SMALL = FIXTURES / "tv3s-parity-small"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("in") / "tiny.mp4", generate_demo_clip(2, 64, 96, seed=2))


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "small.json"
    path.write_text(json.dumps(json.loads((SMALL / "config.json").read_text())["model"]))
    return path


def read_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("mode", ["stream", "clip"])
def test_segment_with_random_weights(tmp_path, video, preset, mode, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "segment",
            str(video),
            "--out",
            str(out),
            "--preset",
            str(preset),
            "--random-weights",
            "--mode",
            mode,
            "--chunk",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == ["000000.png", "000001.png"]
    labels = decode_mask_png(masks[1].read_bytes())
    assert labels.shape == (64, 96) and labels.dtype == np.uint8 and labels.max() < 7
    assert len(list((out / "overlay").glob("*.jpg"))) == 2 and (out / "preview.png").is_file()
    summary = read_summary(out)
    assert summary["frames"] == 2 and summary["classes"] == 7 and summary["mode"] == mode
    assert summary["random_weights"] is True and "RANDOM WEIGHTS" in summary["warning"]
    assert summary["model_id"] and len(summary["class_pixel_fraction"]) == 7
    captured = capsys.readouterr()
    assert "RANDOM WEIGHTS" in captured.out and "RANDOM WEIGHTS" in captured.err


def test_segment_refuses_without_checkpoint(tmp_path, video, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(video), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "--random-weights" in err
    assert not out.exists()


def test_segment_with_checkpoint(tmp_path, video):
    out = tmp_path / "out"
    code = main(
        [
            "segment",
            str(video),
            "--out",
            str(out),
            "--checkpoint",
            str(SMALL / "checkpoint.pth"),
            "--max-frames",
            "1",
            "--no-overlay",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    summary = read_summary(out)
    assert summary["random_weights"] is False and summary["checkpoint"].endswith("checkpoint.pth")
    assert summary["frames"] == 1 and not (out / "overlay").exists()


def test_segment_reports_bad_input(tmp_path, preset, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 5000)
    code = main(["segment", str(bad), "--out", str(tmp_path / "out"), "--preset", str(preset), "--random-weights"])
    assert code == 1
    assert "broken.mp4" in capsys.readouterr().err


def test_demo_uses_the_shipped_checkpoint(tmp_path):
    from tv3s import DEMO_CHECKPOINT

    out = tmp_path / "demo"
    code = main(["demo-clip", "--out", str(out), "--frames", "2", "--height", "64", "--width", "96", "--device", "cpu"])
    assert code == 0
    summary = read_summary(out)
    assert summary["random_weights"] is False and summary["classes"] == 19
    assert summary["checkpoint"] == str(DEMO_CHECKPOINT)


def test_demo(tmp_path, preset, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo-clip",
            "--out",
            str(out),
            "--random-weights",
            "--preset",
            str(preset),
            "--frames",
            "2",
            "--height",
            "64",
            "--width",
            "96",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert (out / "demo.mp4").is_file() and len(list((out / "masks").glob("*.png"))) == 2
    assert read_summary(out)["random_weights"] is True
    printed = capsys.readouterr().out
    assert str(out / "preview.png") in printed and str(out / "summary.json") in printed
    # a second run into the same folder needs --overwrite
    assert (
        main(
            [
                "demo-clip",
                "--out",
                str(out),
                "--preset",
                str(preset),
                "--frames",
                "2",
                "--height",
                "64",
                "--width",
                "96",
            ]
        )
        == 2
    )


@pytest.mark.ray
@pytest.mark.slow
def test_demo_runs_a_real_job_end_to_end(tmp_path, capsys):
    """The README's demo: archive on a local S3 server, a local Ray, query, ground truth, overlays."""
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--videos",
                "2",
                "--frames",
                "12",
                "--height",
                "64",
                "--width",
                "128",
                "--actors",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "local S3 server (moto) at http://127.0.0.1:" in printed and "finished: 24 frames" in printed
    assert "drive000 | 12" in printed and "mIoU" in printed
    assert (out / "overlay.mp4").stat().st_size > 0 and Image.open(out / "review.png").size[0] > 128
    assert main(["query", str(out / "labels"), "SELECT count(*) AS n FROM frames", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "24"
