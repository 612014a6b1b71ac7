"""`tv3s review export` read back by Label Studio's decoder and by CVAT's documented layout; `review import`
of edited exports into the shards `tv3s train` reads."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle as studio_decode
from label_studio_sdk.converter.brush import encode_rle as studio_encode
from PIL import Image

from tv3s.lifecycle.review_export import CVAT_ZIP, REVIEW, TASKS, ReviewError, export_review
from tv3s.lifecycle.review_import import import_review, parse_classes
from tv3s.lifecycle.review_pick import pick_frames
from tv3s.lifecycle.sides import open_side
from tv3s.pipeline.ingest.decode import decode_image
from tv3s.pipeline.storage import Store
from tv3s.pipeline.synthetic.training_data import read_training_shards

from ..support.manifest_data import NUM_CLASSES, SCENE_FRAMES, local_scene_output, run_info, scene_frames

RUN = run_info()
SETTINGS = {"frames": 6}


@pytest.fixture()
def review(tmp_path):
    """Six frames of the scene (both videos) exported for review: (dest, committed masks by name, review.json)."""
    out, masks, _ = local_scene_output(tmp_path, RUN)
    side = open_side("review", out, None)
    picks = pick_frames(side.con, side.job_id, 6, min_gap=2)
    dest = tmp_path / "review"
    export_review(side, picks, str(dest), Store(), SETTINGS)
    record = json.loads((dest / REVIEW).read_text())
    by_name = {f["name"]: masks[f["video_id"]][f["frame_index"]] for f in record["frames"]}
    return dest, by_name, record


def test_review_json_records_each_frame_and_why(review):
    _, by_name, record = review
    assert record["job_id"] == RUN.job_id and record["settings"] == SETTINGS and not record["skipped"]
    assert record["class_names"] == [f"class_{i}" for i in range(NUM_CLASSES)]
    frames = sorted(record["frames"], key=lambda f: f["rank"])
    assert [f["rank"] for f in frames] == list(range(6))
    assert frames[0]["reason"] == "low_confidence" and frames[0]["frame_index"] == SCENE_FRAMES - 1  # the least sure
    assert {f["reason"] for f in frames} <= {"low_confidence", "flicker", "rare_classes"}
    assert all(f["score"] > 0 and f["width"] == 64 and f["height"] == 48 for f in frames)


def test_label_studio_tasks_decode_with_label_studios_decoder_to_the_committed_masks(review):
    dest, by_name, _ = review
    tasks = json.loads((dest / TASKS).read_text())
    assert len(tasks) == 6
    for task in tasks:
        mask = by_name[task["data"]["name"]]
        assert task["data"]["image"] == f"{dest}/images/{task['data']['name']}.jpg"
        (prediction,) = task["predictions"]
        painted = np.full(mask.shape, -1)
        for region in prediction["result"]:
            assert (region["type"], region["from_name"], region["to_name"]) == ("brushlabels", "label", "image")
            assert (region["original_height"], region["original_width"]) == mask.shape
            alpha = studio_decode(region["value"]["rle"]).reshape(*mask.shape, 4)[:, :, 3] > 0
            (name,) = region["value"]["brushlabels"]
            assert not (painted[alpha] >= 0).any()  # regions do not overlap
            painted[alpha] = int(name.removeprefix("class_"))
        assert np.array_equal(painted, mask)
    config = (dest / "label-studio-config.xml").read_text()
    assert '<BrushLabels name="label" toName="image">' in config and config.count("<Label ") == NUM_CLASSES


def read_cvat_zip(data: bytes) -> tuple[dict[tuple, str], dict[str, dict[str, bytes]]]:
    """CVAT's Segmentation mask 1.1 as its docs lay it out, parsed here: labelmap colours and files per image."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    labelmap = {}
    for line in archive.read("labelmap.txt").decode().splitlines():
        if line and not line.startswith("#"):
            name, colour, parts, actions = line.split(":")
            labelmap[tuple(int(v) for v in colour.split(","))] = name
    names = archive.read("ImageSets/Segmentation/default.txt").decode().split()
    files = {
        n: {
            d: archive.read(f"{d}/{n}.{'jpg' if d == 'JPEGImages' else 'png'}")
            for d in ("JPEGImages", "SegmentationClass", "SegmentationObject")
        }
        for n in names
    }
    return labelmap, files


def test_the_cvat_export_follows_the_documented_layout_and_holds_the_committed_masks(review):
    dest, by_name, record = review
    labelmap, files = read_cvat_zip((dest / CVAT_ZIP).read_bytes())
    assert labelmap[(0, 0, 0)] == "background" and len(labelmap) == NUM_CLASSES + 1  # distinct colours, none black
    class_of = {colour: int(name.removeprefix("class_")) for colour, name in labelmap.items() if name != "background"}
    assert sorted(files) == sorted(by_name)
    frames = scene_frames()
    for name, parts in files.items():
        rgb = np.asarray(Image.open(io.BytesIO(parts["SegmentationClass"])).convert("RGB"))
        labels = np.vectorize(lambda r, g, b: class_of[(r, g, b)])(rgb[..., 0], rgb[..., 1], rgb[..., 2])
        assert np.array_equal(labels, by_name[name])
        objects = Image.open(io.BytesIO(parts["SegmentationObject"]))
        assert objects.mode == "P"
        instances = np.asarray(objects)
        for k in np.unique(instances):  # one object per class: each instance lies within one class
            assert k > 0 and len(np.unique(by_name[name][instances == k])) == 1
        image = decode_image(parts["JPEGImages"]).rgb
        if name.startswith("still"):  # a PNG source: the JPEG is the frame up to JPEG's loss
            entry = next(f for f in record["frames"] if f["name"] == name)
            assert np.abs(image.astype(int) - frames[entry["frame_index"]].astype(int)).mean() < 2
        assert parts["JPEGImages"] == (dest / "images" / f"{name}.jpg").read_bytes()


def shard_masks(shards: list[str]) -> dict[tuple[str, int], np.ndarray]:
    videos = read_training_shards(shards)
    return {(v, s.frame_index): np.asarray(Image.open(io.BytesIO(s.mask))) for v, ss in videos.items() for s in ss}


def names_to_keys(record: dict) -> dict[str, tuple[str, int]]:
    return {f["name"]: (f["video_id"], f["frame_index"]) for f in record["frames"]}


def edited_cvat_zip(dest, edits: dict[str, np.ndarray], drop_images: bool = True) -> bytes:
    """The exported zip as an annotator would send it back: SegmentationClass masks repainted to `edits`
    (class index, 255 = background), images left out as CVAT leaves them out by default."""
    source = zipfile.ZipFile(dest / CVAT_ZIP)
    labelmap, _ = read_cvat_zip((dest / CVAT_ZIP).read_bytes())
    colour_of = {name: colour for colour, name in labelmap.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for member in source.namelist():
            data = source.read(member)
            name = member.rsplit("/", 1)[-1][:-4]
            if member.startswith("JPEGImages/") and drop_images:
                continue
            if member.startswith("SegmentationClass/") and name in edits:
                labels = edits[name]
                rgb = np.zeros((*labels.shape, 3), np.uint8)
                for c in np.unique(labels):
                    rgb[labels == c] = colour_of["background" if c == 255 else f"class_{c}"]
                png = io.BytesIO()
                Image.fromarray(rgb).save(png, format="PNG")
                data = png.getvalue()
            out.writestr(member, data)
    return buf.getvalue()


def test_an_edited_cvat_export_imports_to_shards_holding_the_edits(review, tmp_path):
    dest, by_name, record = review
    edits = {name: mask.copy() for name, mask in by_name.items()}
    first, second = sorted(edits)[:2]
    edits[first][5:20, 10:30] = 3  # a class the scene never had
    edits[second][:, :8] = 255  # unlabeled: ignored in training
    src = tmp_path / "from-cvat.zip"
    src.write_bytes(edited_cvat_zip(dest, edits))
    result = import_review(str(src), str(dest), str(tmp_path / "shards"), Store(), shard_frames=4)
    assert result.samples == 6 and len(result.shards) == 2 and not result.empty
    keys = names_to_keys(record)
    got = shard_masks(result.shards)
    assert {k: m.tolist() for k, m in got.items()} == {keys[n]: m.tolist() for n, m in edits.items()}
    videos = read_training_shards(result.shards)
    image = next(s.image for s in videos[keys[first][0]] if s.frame_index == keys[first][1])
    assert image == (dest / "images" / f"{first}.jpg").read_bytes()
    assert json.loads((tmp_path / "shards" / "_import.json").read_text())["format"] == "cvat"
    zipfile.ZipFile(src).extractall(tmp_path / "unpacked")  # the same export as a folder
    unpacked = import_review(str(tmp_path / "unpacked"), str(dest), str(tmp_path / "from-folder"), Store())
    assert {k: m.tolist() for k, m in shard_masks(unpacked.shards).items()} == {k: m.tolist() for k, m in got.items()}


def brush(mask: np.ndarray, name: str) -> dict:
    """A region as Label Studio writes it, encoded with Label Studio's own encoder."""
    height, width = mask.shape
    rle = studio_encode(np.repeat(np.where(mask, 255, 0).ravel(), 4))
    return {
        "type": "brushlabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "value": {"format": "rle", "rle": rle, "brushlabels": [name]},
    }


def studio_export(dest, painted: dict[str, list[tuple[np.ndarray, str]]]) -> list[dict]:
    """Label Studio's JSON export of the tasks: the prediction accepted, then the regions `painted` drawn over
    it; tasks not in `painted` were skipped (a cancelled annotation)."""
    tasks = json.loads((dest / TASKS).read_text())
    exported = []
    for number, task in enumerate(tasks):
        name = task["data"]["name"]
        result = task["predictions"][0]["result"]
        if name in painted:
            annotations = [
                {"id": 1, "result": [], "updated_at": "2026-01-01T00:00:00Z"},  # an older attempt
                {
                    "id": 2,
                    "result": result + [brush(m, c) for m, c in painted[name]],
                    "updated_at": "2026-01-02T00:00:00Z",
                },
            ]
        else:
            annotations = [{"id": 3, "result": result, "was_cancelled": True}]
        exported.append(
            {"id": number, "data": task["data"], "annotations": annotations, "predictions": task["predictions"]}
        )
    return exported


def test_an_edited_label_studio_export_imports_to_shards_holding_the_edits(review, tmp_path):
    dest, by_name, record = review
    names = sorted(by_name)
    box = np.zeros((48, 64), bool)
    box[30:40, 5:25] = True
    painted = {names[0]: [(box, "class_1")], names[1]: [], names[2]: [(box, "class_3"), (box[::-1], "class_2")]}
    src = tmp_path / "project.json"
    src.write_text(json.dumps(studio_export(dest, painted)))
    result = import_review(str(src), str(dest), str(tmp_path / "shards"), Store())
    assert result.samples == 3 and sorted(result.not_annotated) == names[3:]
    expected = {n: by_name[n].copy() for n in names[:3]}
    expected[names[0]][box] = 1
    expected[names[2]][box] = 3
    expected[names[2]][box[::-1]] = 2  # drawn later: on top
    keys = names_to_keys(record)
    assert {k: m.tolist() for k, m in shard_masks(result.shards).items()} == {
        keys[n]: m.tolist() for n, m in expected.items()
    }


def test_labels_map_by_name_to_the_classes_given(review, tmp_path):
    dest, by_name, record = review
    src = tmp_path / "from-cvat.zip"
    src.write_bytes(edited_cvat_zip(dest, {}))
    reversed_names = tmp_path / "classes.txt"
    reversed_names.write_text("".join(f"class_{i}\n" for i in reversed(range(NUM_CLASSES))))
    result = import_review(str(src), str(dest), str(tmp_path / "shards"), Store(), parse_classes(str(reversed_names)))
    keys = names_to_keys(record)
    got = shard_masks(result.shards)
    assert all(np.array_equal(got[keys[n]], NUM_CLASSES - 1 - m) for n, m in by_name.items())


def test_an_unknown_class_stops_the_import_with_its_name_and_the_fix(review, tmp_path):
    dest, by_name, _ = review
    (tmp_path / "four.txt").write_text("class_0\nclass_1\nclass_2\nclass_3\n")
    src = tmp_path / "from-cvat.zip"
    src.write_bytes(edited_cvat_zip(dest, {}))
    with pytest.raises(ReviewError, match="CVAT label 'class_4' .* is not a class of the model .* rename the label"):
        import_review(str(src), str(dest), str(tmp_path / "s1"), Store(), parse_classes(str(tmp_path / "four.txt")))
    name = sorted(by_name)[0]
    project = tmp_path / "project.json"
    project.write_text(json.dumps(studio_export(dest, {name: [(by_name[name] == 0, "Car")]})))
    with pytest.raises(ValueError, match="label 'Car' is not a class of the model .* rename it in the Label Studio"):
        import_review(str(project), str(dest), str(tmp_path / "s2"), Store())
    assert not (tmp_path / "s2").exists()  # checked before anything is written


def test_the_command_line(review, tmp_path, capsys):
    from tv3s.cli import main

    dest, _, record = review
    out = record["output"]
    again = str(tmp_path / "again")
    assert main(["review", "export", out, "--to", again, "--frames", "3", "--per-video", "1"]) == 0
    assert "2 frames for review" in capsys.readouterr().out  # two videos, one frame each
    assert main(["review", "export", out, "--to", again, "--frames", "3"]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(["review", "export", out, "--to", str(tmp_path / "x"), "--frames", "3", "--rare-share", "2"]) == 2
    src = tmp_path / "from-cvat.zip"
    src.write_bytes(edited_cvat_zip(dest, {}))
    assert main(["review", "import", str(src), "--review", str(dest), "--to", str(tmp_path / "shards")]) == 0
    assert "6 annotated frames in 1 shard(s)" in capsys.readouterr().out
    assert main(["review", "import", str(src), "--review", str(tmp_path), "--to", str(tmp_path / "s2")]) == 1
    assert "pass --review the folder" in capsys.readouterr().err
    assert (
        main(
            [
                "review",
                "import",
                str(src),
                "--review",
                str(dest),
                "--to",
                str(tmp_path / "s3"),
                "--classes",
                "cityscapes",
            ]
        )
        == 1
    )
    assert "CVAT label 'class_0'" in capsys.readouterr().err


def test_a_lost_source_leaves_its_frames_out_and_names_them(tmp_path):
    out, _, _ = local_scene_output(tmp_path, RUN)
    (tmp_path / "clip.mp4").unlink()
    side = open_side("review", out, None)
    result = export_review(side, pick_frames(side.con, side.job_id, 4, 2), str(tmp_path / "r"), Store(), SETTINGS)
    assert {f["video_id"] for f in result.frames} == {"still"} and {s["video_id"] for s in result.skipped} == {"clip"}
    assert "clip.mp4" in result.skipped[0]["error"]
    with pytest.raises(ReviewError, match="not empty"):
        export_review(side, pick_frames(side.con, side.job_id, 4, 2), str(tmp_path / "r"), Store(), SETTINGS)
