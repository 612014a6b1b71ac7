"""Loading official checkpoints: strict, weights-only, clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from tv3s.model import CheckpointError, build_model, build_model_from_checkpoint, load_checkpoint

from ..support.fixtures import fixture_config, fixture_dir

SMALL = "tv3s-parity-small"


def save(tmp_path, obj, name="ckpt.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_module_prefix_and_fp32_weights(tmp_path):
    ck = torch.load(fixture_dir(SMALL) / "checkpoint.pth", weights_only=True)
    state = {"module." + k: (v.float() if v.is_floating_point() else v) for k, v in ck["state_dict"].items()}
    path = save(tmp_path, {"meta": ck["meta"], "state_dict": state})
    a = load_checkpoint(build_model(fixture_config(SMALL)["model"]), path)
    b = load_checkpoint(build_model(fixture_config(SMALL)["model"]), fixture_dir(SMALL) / "checkpoint.pth")
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k
    assert a.class_names[:2] == ["class_0", "class_1"] and a.palette[1].tolist() == [37, 91, 173]


def test_wrong_checkpoint_names_the_keys():
    model = build_model(fixture_config(SMALL)["model"])
    with pytest.raises(CheckpointError, match=r"missing keys: backbone\.block1.*unexpected keys: backbone\.layers"):
        load_checkpoint(model, fixture_dir("tv3s-parity-swin-small") / "checkpoint.pth")


def test_misshaped_key_is_named(tmp_path):
    ck = torch.load(fixture_dir(SMALL) / "checkpoint.pth", weights_only=True)
    ck["state_dict"]["decode_head.linear_pred2.weight"] = torch.zeros(9, 64, 1, 1)
    path = save(tmp_path, ck)
    with pytest.raises(CheckpointError, match=r"mis-shaped.*linear_pred2\.weight \[9, 64, 1, 1\] != \[7, 64, 1, 1\]"):
        load_checkpoint(build_model(fixture_config(SMALL)["model"]), path)


def test_unreadable_and_unsafe_files_are_refused(tmp_path):
    model = build_model(fixture_config(SMALL)["model"])
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(model, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(model, junk)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(model, evil)
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_checkpoint(model, save(tmp_path, {"meta": {}}))


def test_checkpoint_from_bytes():
    data = (fixture_dir(SMALL) / "checkpoint.pth").read_bytes()
    model = build_model_from_checkpoint(data)
    assert model.checkpoint_sha256 and model.num_classes == 7


def test_unknown_layout_is_a_clear_error(tmp_path):
    path = save(tmp_path, {"state_dict": {"encoder.conv.weight": torch.zeros(3)}})
    with pytest.raises(CheckpointError, match="unknown backbone layout"):
        build_model_from_checkpoint(path)


def test_bad_config_dicts_name_the_field():
    cfg = fixture_config(SMALL)["model"]
    with pytest.raises(ValueError, match="num_classes"):
        build_model({**cfg, "num_classes": 0})
    with pytest.raises(ValueError, match="model_type"):
        build_model({**cfg, "decoder_params": {**cfg["decoder_params"], "model_type": 1}})
    with pytest.raises(ValueError, match="backbone 'resnet50'"):
        build_model({**cfg, "backbone": "resnet50"})
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("tv3s-b9-vspw")
