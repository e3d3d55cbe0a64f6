"""PaddleClas's inference_general.yaml, as shipped in paddleclas==2.6.0, drives rec_system.

Every key of the shipped file is mapped (or, for the offline-only ones, ignored and logged);
anything else is named in an error. Served: the shipped file with its model folders pointed at
models of the same kind (the PaddleDetection-export fixture, as no real PicoDet exists offline;
our DINOv2 feature model), embedding_size set to that model's 384 and the IndexProcess paths at
a temporary gallery; `use_gpu: False` comes from init_args (the file says True, and this machine
has no GPU).
"""
import dataclasses
import logging
import os

import pytest
import yaml
from fixtures_detector import export_fixture_detector

from clas_system.ops.decode import decode_image
from clas_system.tasks.recognition import build_recognizer
from harness.paddleclas_reference import wheel_folder
from harness.payloads import SHARED_IMAGES, image_b64, image_bytes
from params import ParamsError
from params.inference_general import read_inference_general
from params.recognition import load_recognition_settings

GALLERY = {"product/gallery/anmuxi/002.jpg": "anmuxi", "drink/youjia.jpeg": "优加 youjia",
           "drink/mosilian.jpeg": "mosilian"}


@pytest.fixture(scope="module")
def shipped():
    with open(wheel_folder() / "deploy" / "configs" / "inference_general.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def write_yaml(path, config):
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


def test_every_key_of_the_shipped_yaml_is_mapped(shipped, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # PaddleClas's relative paths are relative to where it runs
    with caplog.at_level(logging.INFO, logger="clas_system"):
        mapped = read_inference_general(write_yaml(tmp_path / "general.yaml", shipped))
    det_ops, rec_ops = shipped["DetPreProcess"]["transform_ops"], shipped["RecPreProcess"]["transform_ops"]
    assert mapped == {
        "detector": {"model_dir": str(tmp_path / "models/picodet_PPLCNet_x2_5_mainbody_lite_v1.0_infer"),
                     "threshold": 0.2, "max_det_results": 5, "label_list": ["foreground"], "preprocess": det_ops},
        "feature": {"preset": None, "model_dir": str(tmp_path / "models/general_PPLCNetV2_base_pretrained_v1.0_infer"),
                    "preprocess": rec_ops},
        "rec_nms_thresh": 0.05,
        "predictor": {"use_gpu": True, "enable_mkldnn": True, "cpu_threads": 10, "use_fp16": False, "ir_optim": True,
                      "use_tensorrt": False, "gpu_mem": 8000},
        "gallery": {"index_method": "HNSW32", "image_root": str(tmp_path / "drink_dataset_v2.0/gallery"),
                    "index_dir": str(tmp_path / "drink_dataset_v2.0/index"),
                    "data_file": str(tmp_path / "drink_dataset_v2.0/gallery/drink_label.txt"),
                    "delimiter": "\t", "dist_type": "IP"},
        "embedding_size": 512, "serving": {"batch_size": 32}, "return_k": 5, "score_thres": 0.5,
    }
    assert "ignoring Global infer_imgs, image_shape, enable_benchmark, enable_profile" in caplog.text


def edited(shipped, section, key, value):
    config = {name: (dict(body) if isinstance(body, dict) else body) for name, body in shipped.items()}
    config[section] = {**(config.get(section) or {}), key: value}
    return config


@pytest.mark.parametrize("section, key, value, message", [
    ("Global", "use_onnxx", True, "Global.use_onnxx: not supported by rec_system; supported keys: "),
    ("Global", "batch_size", 4, "Global.batch_size: 4; PaddleClas's predict_system requires 1"),
    ("IndexProcess", "index_operation", "append", "IndexProcess.index_operation: 'append' is not supported"),
    ("IndexProcess", "hamming_radus", 5, "IndexProcess.hamming_radus: not supported by rec_system"),
    ("RecPostProcess", "Binarize", {"method": "round"}, "RecPostProcess: {'Binarize': {'method': 'round'}} is not "
                                                        "supported"),
    ("DetPostProcess", "keep_top_k", 3, "DetPostProcess: {'keep_top_k': 3} is not supported"),
    ("TrainProcess", "epochs", 3, "section 'TrainProcess' is not supported"),
])
def test_keys_rec_system_cannot_honour_are_named(shipped, tmp_path, section, key, value, message):
    path = write_yaml(tmp_path / "general.yaml", edited(shipped, section, key, value))
    with pytest.raises(ParamsError) as err:
        load_recognition_settings({"inference_config": path})
    assert message in str(err.value)
    assert str(err.value).startswith(path)


def test_binary_features_and_hamming_radius(shipped, tmp_path):
    config = edited(shipped, "IndexProcess", "dist_type", "hamming")
    config["IndexProcess"].update(hamming_radius=40, index_dir=str(tmp_path / "g"), embedding_size=384)
    config["IndexProcess"].pop("data_file")
    config["IndexProcess"].pop("image_root")
    config["RecPostProcess"] = {"Binarize": {"method": "sign"}}
    config["Global"].update(det_inference_model_dir=None, rec_inference_model_dir=None)
    settings = load_recognition_settings({"inference_config": write_yaml(tmp_path / "general.yaml", config)},
                                         {"use_gpu": False})
    assert settings.detector is None  # PaddleClas disables detection when the folder is empty
    assert settings.feature.binarize and settings.gallery.dist_type == "hamming" and settings.hamming_radius == 40
    assert settings.feature.model_path.endswith("efficientnet_lite2.onnx")  # params.py's preset, as none was given
    with pytest.raises(ParamsError, match="hamming_radius: applies to dist_type hamming only"):
        load_recognition_settings({"hamming_radius": 3})


@pytest.fixture(scope="module")
def general_yaml(shipped, tmp_path_factory):
    """The shipped file, model folders pointed at models of the same kind, paths at a temp gallery."""
    workdir = tmp_path_factory.mktemp("general")
    export_fixture_detector(workdir / "detector")
    feature_model = load_recognition_settings({"feature": {"preset": "dinov2_vits14"}}).feature.model_path
    (workdir / "gallery_list.txt").write_text("".join(f"{p}\t{label}\n" for p, label in GALLERY.items()),
                                              encoding="utf-8")
    config = {name: (dict(body) if isinstance(body, dict) else body) for name, body in shipped.items()}
    config["Global"].update(det_inference_model_dir=str(workdir / "detector"), rec_inference_model_dir=feature_model)
    config["IndexProcess"].update(image_root=str(SHARED_IMAGES), index_dir=str(workdir / "index"),
                                  data_file=str(workdir / "gallery_list.txt"), embedding_size=384)
    return write_yaml(workdir / "inference_general.yaml", config), workdir


def test_shipped_yaml_starts_rec_system_and_serves(server_factory, general_yaml):
    path, workdir = general_yaml
    server = server_factory(modules={"rec_system": {"inference_config": path, "use_gpu": False}})
    stats = server.post("rec_system", {"gallery": "stats"})["results"]["stats"]
    assert stats["count"] == 3 and stats["labels"] == {"anmuxi": 1, "优加 youjia": 1, "mosilian": 1}
    assert (stats["method"], stats["metric"], stats["dim"]) == ("HNSW32", "IP", 384)
    assert os.path.isdir(workdir / "index")  # IndexProcess.index_dir, built from data_file ("new")

    body = server.post("rec_system", {"images": [image_b64("drink/youjia.jpeg")]})
    assert body["status"] == "000", body
    regions = body["results"]["prediction"][0]
    assert regions[0]["rec_docs"] == "优加 youjia" and regions[0]["rec_scores"] >= 0.99
    assert all(r["rec_scores"] >= 0.5 for r in regions)  # IndexProcess.score_thres
    refused = server.post("rec_system", {"images": [image_b64("drink/youjia.jpeg")], "det_threshold": 2})
    assert refused["status"] == "101" and "det_threshold: expected a number from 0.0 to 1.0" in refused["msg"]


def test_detector_keys_from_the_yaml_and_per_request(general_yaml, tmp_path):
    """Global.threshold 0.2 and max_det_results 5 by default; det_threshold / max_det_results per request."""
    path, _ = general_yaml
    settings = load_recognition_settings({"inference_config": path},
                                         {"use_gpu": False, "index_dir": str(tmp_path / "index"), "data_file": None})
    recognizer = build_recognizer(settings)
    try:
        image = decode_image(image_bytes("drink/youjia.jpeg"))
        defaults = recognizer.default_options
        assert (defaults.return_k, defaults.score_thres, settings.rec_nms_thresh) == (5, 0.5, 0.05)
        counts = [len(recognizer.detections([image], dataclasses.replace(defaults, **options))[0])
                  for options in ({}, {"det_threshold": 0.0, "max_det_results": 10}, {"det_threshold": 0.7},
                                  {"max_det_results": 1})]
        assert counts == [4, 6, 2, 1]  # the fixture's scores: 0.95, 0.8, 0.6, 0.4, 0.15, 0.05
    finally:
        recognizer.gallery.close()


def test_embedding_size_is_checked_against_the_model(general_yaml, tmp_path):
    path, _ = general_yaml
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["IndexProcess"].update(embedding_size=512, index_dir=str(tmp_path / "index"))
    config["IndexProcess"].pop("data_file")
    settings = load_recognition_settings({"inference_config": write_yaml(tmp_path / "g.yaml", config)},
                                         {"use_gpu": False})
    with pytest.raises(ParamsError, match="rec_system.embedding_size: 512, but the feature model .* makes 384"):
        build_recognizer(settings)
