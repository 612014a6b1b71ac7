"""mIoU and mVC against values computed by hand on small arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from tv3s.pipeline.evaluation.metrics import (
    Evaluation,
    class_iou,
    confusion_matrix,
    mean_iou,
    reduce_zero_label,
    window_consistency,
)
from tv3s.pipeline.outputs.masks import decode_mask_png


def test_miou_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    confusion = confusion_matrix(gt, pred, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]  # the ignored pixel is not counted
    assert class_iou(confusion).tolist() == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert mean_iou(confusion) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_miou_counts_a_hallucinated_class_and_skips_an_absent_one():
    gt = np.array([[0, 0, 0, 0]], np.uint8)
    pred = np.array([[0, 0, 0, 2]], np.uint8)  # class 2 predicted, not in the ground truth; class 1 nowhere
    iou = class_iou(confusion_matrix(gt, pred, 3))
    assert iou[0] == pytest.approx(3 / 4) and math.isnan(iou[1]) and iou[2] == 0.0
    assert mean_iou(confusion_matrix(gt, pred, 3)) == pytest.approx((3 / 4 + 0) / 2)


def test_vspw_raw_masks_reduce_zero_label():
    raw = np.array([0, 1, 2, 124, 255], np.uint8)
    assert reduce_zero_label(raw).tolist() == [255, 0, 1, 123, 255]


def test_one_window_by_hand():
    gts = [np.array([[1, 1], [2, 255]]), np.array([[1, 1], [3, 255]]), np.array([[1, 1], [2, 255]])]
    preds = [np.array([[1, 0], [2, 2]]), np.array([[1, 1], [2, 2]]), np.array([[1, 0], [2, 2]])]
    # ground truth constant at 3 pixels (the ignore pixel included, as in the official script);
    # the prediction is also constant at 2 of them
    assert window_consistency(gts, preds) == pytest.approx(2 / 3)
    assert math.isnan(window_consistency([np.array([0]), np.array([1])], [np.array([0]), np.array([0])]))


def test_mvc_windows_and_short_videos_like_the_official_script():
    evaluation = Evaluation(num_classes=2)
    evaluation.start_video()  # 18 frames: the prediction of pixel (0, 0) flips at frame 10
    gt = np.zeros((2, 2), np.uint8)
    for t in range(18):
        pred = np.zeros((2, 2), np.uint8)
        pred[0, 0] = t >= 10
        evaluation.add_frame(gt, pred)
    evaluation.start_video()  # 16 frames: skipped for VC, counted for mIoU
    for _ in range(16):
        evaluation.add_frame(gt, np.ones((2, 2), np.uint8))
    result = evaluation.result()
    # VC_8: windows start at 0..9 (range(18 - 8)); those starting at 3..9 contain the flip
    assert result["windows_8"] == 10 and result["mVC_8"] == pytest.approx((3 * 1.0 + 7 * 0.75) / 10)
    # VC_16: windows start at 0 and 1, both contain the flip
    assert result["windows_16"] == 2 and result["mVC_16"] == pytest.approx(0.75)
    assert result["videos"] == 2 and result["videos_skipped_for_vc"] == 1 and result["frames"] == 34
    # mIoU over all 34 frames: gt all 0; predicted 0 at 4*10 + 3*8 pixels, 1 at 8 + 64
    tp0, fp1 = 40 + 24, 8 + 64
    assert result["mIoU"] == pytest.approx((tp0 / (tp0 + fp1) + 0.0) / 2)


def official_get_common(gts, preds, clip_num):
    """tools/VC_perclip.py's get_common, transliterated, as the reference."""
    accs = []
    h, w = gts[0].shape
    for i in range(len(gts) - clip_num):
        global_common = np.ones((h, w))
        pred_global_common = np.ones((h, w))
        for j in range(1, clip_num):
            global_common = np.logical_and(global_common, gts[i] == gts[i + j])
            pred_global_common = np.logical_and(pred_global_common, preds[i] == preds[i + j])
        both = pred_global_common * global_common
        with np.errstate(invalid="ignore"):
            accs.append(both.sum() / global_common.sum())
    return accs


def test_mvc_equals_the_official_computation_on_random_videos():
    rng = np.random.default_rng(0)
    evaluation = Evaluation(num_classes=3)
    official = {8: [], 16: []}
    for length in (17, 23, 30):
        base = rng.integers(0, 3, (6, 7))

        def noisy(rate: float, base: np.ndarray = base) -> np.ndarray:
            return np.where(rng.random((6, 7)) < rate, rng.integers(0, 3, (6, 7)), base).astype(np.uint8)

        gts = [noisy(0.05) for _ in range(length)]
        preds = [noisy(0.08) for _ in range(length)]
        evaluation.start_video()
        for g, p in zip(gts, preds, strict=True):
            evaluation.add_frame(g, p)
        for n in official:
            official[n].extend(official_get_common(gts, preds, n))
    result = evaluation.result()
    for n in official:
        assert result[f"mVC_{n}"] == pytest.approx(float(np.nanmean(official[n])), rel=1e-12)


# --- tv3s eval on a generated output ------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """An output of two 18-frame videos and ground truth: video 0 exact, video 1 with class 1
    relabelled 2 and a few frames missing (VSPW's raw encoding: label + 1)."""
    from tv3s.pipeline.outputs.commit import Output

    from ..support.manifest_data import run_info, sample_job, write_job

    root = tmp_path_factory.mktemp("eval")
    run = run_info()
    job = sample_job(run, videos=2, segments=2, per_segment=9)
    output = Output(str(root / "out"))
    write_job(output, run, job)
    truth = {}
    for video_id, segments in job.items():
        for rows in segments.values():
            for row in rows:
                labels = decode_mask_png(row.mask_png)
                if video_id.startswith("video 1"):
                    if row.frame_index in (4, 5):
                        continue
                    labels = np.where(labels == 1, 2, labels).astype(np.uint8)
                truth[(video_id, row.frame_index)] = (labels, labels)
                folder = root / "gt" / video_id
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray((labels + 1).astype(np.uint8)).save(folder / f"{row.frame_index:08d}.png")
    masks = {(v, r.frame_index): decode_mask_png(r.mask_png) for v, s in job.items() for rs in s.values() for r in rs}
    return output, root / "gt", truth, masks, run


def test_eval_against_ground_truth_equals_the_metrics_on_the_arrays(scored):
    from tv3s.pipeline.evaluation.evaluate import evaluate_against_ground_truth
    from tv3s.pipeline.outputs.query import connect

    output, gt_dir, truth, masks, run = scored
    result = evaluate_against_ground_truth(connect(output), run.job_id, str(gt_dir), reduce_zero=True)
    expected = Evaluation(num_classes=run.num_classes)
    for video_id in sorted({v for v, _ in truth}):
        expected.start_video()
        for (v, t), (gt, _) in sorted(truth.items()):
            if v == video_id:
                expected.add_frame(gt, masks[(v, t)])
    reference = expected.result()
    assert result["frames"] == 34 and result["videos"] == 2 and result["videos_without_ground_truth"] == 0
    for key in ("mIoU", "mVC_8", "mVC_16", "windows_8", "windows_16"):
        assert result[key] == pytest.approx(reference[key]), key
    assert result["windows_8"] == 10  # video 1 lost 2 frames: 16 are left, so VC skips it
    assert result["videos_skipped_for_vc"] == 1 and result["mVC_8"] == 1.0  # video 0 is exact
    assert result["mIoU"] < 1.0


def test_eval_command_with_and_without_ground_truth(scored, tmp_path, capsys):
    from tv3s.cli import main

    output, gt_dir, _, _, _ = scored
    report = tmp_path / "eval.json"
    assert main(["eval", output.url, "--ground-truth", str(gt_dir), "--reduce-zero-label", "--json", str(report)]) == 0
    assert "mVC_16" in capsys.readouterr().out
    saved = json.loads(report.read_text())
    assert saved["mVC_16"] == 1.0 and len(saved["class_iou"]) == 5
    assert main(["eval", output.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(" | ")[0].strip() == "video_id" and lines[-2].startswith("ALL")
    assert main(["eval", output.url, "--ground-truth", str(tmp_path / "nothing")]) == 2
    assert "no ground truth found" in capsys.readouterr().err
