"""Backends: which runtime `auto` picks, OpenVINO's precision, uint8 images normalised in the
graph, and each backend serving the real packaged models over HTTP."""
import dataclasses
import multiprocessing
import os
import threading

import numpy as np
import pytest

from clas_system import Client
from clas_system.client.encode import ndarray_to_b64
from clas_system.errors import ModelError
from clas_system.ops.decode import decode_image
from clas_system.ops.preprocess import build_pipeline
from clas_system.runtime.predictor import LazyPredictor, auto_backend, choose_backend, create_predictor
from clas_system.tasks.classify import build_classifier
from harness.payloads import image_bytes
from params import ParamsError, load_classifier_settings
from params.common import PredictorParams

ROT0 = "orientation/img_rot0_demo.jpg"
ROT180 = "orientation/img_rot180_demo.jpg"
TEXT_UP = "textline/textline_orientation_test_0_0.png"
TEXT_DOWN = "textline/textline_orientation_test_1_0.png"
PHOTOS = [ROT0, ROT180, "imagenet/ILSVRC2012_val_00006666.JPEG", "imagenet/ILSVRC2012_val_00020010.jpeg",
          "product/query/anmuxi.jpg", TEXT_UP]
PULC = "text_image_orientation"
TEXT_LINE = "text_line_orientation"


def model_path(preset):
    return load_classifier_settings({"preset": preset}).model_path


def classifier(preset, **predictor):
    return build_classifier(load_classifier_settings({"preset": preset, "predictor": predictor,
                                                      "serving": {"reduced_decode": False}}))


@pytest.fixture
def pir_folder(tmp_path):
    """A Paddle 3 PIR folder's file names (the rule looks at names; nothing is loaded)."""
    (tmp_path / "inference.json").write_text("{}")
    (tmp_path / "inference.pdiparams").write_bytes(b"")
    return str(tmp_path)


def test_auto_picks_openvino_on_cpu_and_paddle_for_pir(pir_folder):
    cpu = PredictorParams()
    assert choose_backend(model_path(PULC), cpu) == "openvino"
    assert choose_backend(model_path(TEXT_LINE), cpu) == "openvino"
    assert choose_backend(pir_folder, cpu) == "paddle"


def test_auto_with_use_gpu_picks_the_runtimes_made_for_it():
    gpu = PredictorParams(use_gpu=True)
    assert auto_backend(model_path(PULC), gpu) == "onnxruntime"
    assert auto_backend(model_path(TEXT_LINE), gpu) == "paddle"


@pytest.mark.parametrize("predictor, model, message", [
    ({"backend": "openvino"}, "pir", "OpenVINO cannot read Paddle 3's PIR programs"),
    ({"backend": "openvino", "use_gpu": True}, TEXT_LINE, "backend 'openvino' runs on CPU here"),
    ({"backend": "paddle", "cpu_precision": "bf16"}, TEXT_LINE, "cpu_precision 'bf16' needs backend 'openvino'"),
    ({"backend": "onnxruntime"}, TEXT_LINE, "ONNX Runtime needs an .onnx file"),
    ({"backend": "paddle"}, PULC, "Paddle Inference needs a model folder"),
])
def test_impossible_backend_choices_are_refused_at_start_up(pir_folder, predictor, model, message):
    path = pir_folder if model == "pir" else model_path(model)
    with pytest.raises(ModelError, match=message):
        LazyPredictor(path, PredictorParams(**predictor))


@pytest.mark.parametrize("predictor, message", [
    ({"backend": "tensorrt"}, "clas_system.predictor.backend: 'tensorrt' is not allowed"),
    ({"cpu_precision": "fp16"}, "clas_system.predictor.cpu_precision: 'fp16' is not allowed"),
])
def test_bad_backend_settings_name_the_key(predictor, message):
    with pytest.raises(ParamsError, match=message):
        load_classifier_settings({"predictor": predictor})


def test_openvino_runs_f32_unless_bf16_is_asked_for():
    settings = load_classifier_settings({"preset": PULC, "predictor": {"cpu_threads": 1}})
    assert create_predictor(settings.model_path, settings.predictor).description.endswith("CPU, f32, 1 threads, 1 stream")
    bf16 = dataclasses.replace(settings.predictor, cpu_precision="bf16")
    import openvino
    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert ", bf16," in create_predictor(settings.model_path, bf16).description
    else:
        with pytest.raises(ModelError, match="this CPU has no bf16 support"):
            create_predictor(settings.model_path, bf16)


def test_openvino_pins_its_threads_only_when_they_take_every_cpu():
    """Processes side by side, each with its share of the CPUs, must not all pin to the first cores."""
    settings = load_classifier_settings({"preset": PULC, "predictor": {"cpu_threads": 1}})
    cpus = len(os.sched_getaffinity(0))
    every_cpu = dataclasses.replace(settings.predictor, cpu_threads=cpus)
    assert create_predictor(settings.model_path, every_cpu).description.endswith(", pinned to cores")
    if cpus > 1:
        assert "pinned" not in create_predictor(settings.model_path, settings.predictor).description


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_images_normalised_in_the_graph_equal_the_float_model(backend):
    """The PULC model fed uint8 images (cast, mean/std, NCHW in the graph) against the unmodified
    model fed PaddleClas-preprocessed float tensors, on real photos."""
    engine = classifier(PULC, backend=backend)
    assert engine.predictor.image_input is not None
    images = [decode_image(image_bytes(name)) for name in PHOTOS]
    in_graph = np.stack(engine.predict_tensors([engine.model.prepare(image) for image in images]))
    float_model = np.stack(engine.predict_tensors([engine.preprocess(image) for image in images]))
    assert np.array_equal(in_graph.argmax(axis=1), float_model.argmax(axis=1))
    assert np.abs(in_graph - float_model).max() <= 1e-5


def test_text_line_padding_after_normalising_stays_out_of_the_graph():
    """PadToSize fills with 0 after NormalizeImage, which no uint8 pixel maps to: that batch is
    normalised in one numpy pass, and the model keeps its float input."""
    pipeline = build_pipeline(load_classifier_settings({}).preprocess)
    assert pipeline.image_input is None
    assert classifier(TEXT_LINE, backend="openvino").predictor.image_input is None


def test_mixed_batch_of_images_and_float_tensors_keeps_order():
    """The batcher may merge a file-protocol request (uint8 images) with an ndarray-protocol one
    (float tensors): each runs on its own graph, rows come back in order."""
    engine = classifier(PULC, backend="openvino")
    images = [decode_image(image_bytes(name)) for name in (ROT0, ROT180, PHOTOS[2])]
    mixed = [engine.model.prepare(images[0]), engine.preprocess(images[1]), engine.model.prepare(images[2])]
    rows = engine.predict_tensors(mixed)
    alone = [engine.predict_tensors([item])[0] for item in mixed]
    assert [row.argmax() for row in rows] == [0, 2, alone[2].argmax()]
    np.testing.assert_allclose(np.stack(rows), np.stack(alone), atol=1e-5)


def test_onnx_runtime_image_model_is_cached_by_model_hash_and_transform(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAS_SYSTEM_CACHE", str(tmp_path))
    engine = classifier(PULC, backend="onnxruntime")
    engine.predict_tensors([engine.image_to_tensor(image_bytes(ROT0))])
    cached = list((tmp_path / "models").glob("image-input-*.onnx"))
    assert len(cached) == 1
    made = cached[0].stat().st_mtime_ns
    again = classifier(PULC, backend="onnxruntime")
    again.predict_tensors([again.image_to_tensor(image_bytes(ROT180))])
    assert [p.stat().st_mtime_ns for p in (tmp_path / "models").glob("image-input-*.onnx")] == [made]


def classify_in_child(engine, connection):
    connection.send(engine.classify([image_bytes(ROT180)])[0]["label_names"])


def test_each_process_loads_its_own_model_on_first_use():
    """gunicorn forks workers after the module is built: nothing is loaded before first use, a
    forked child loads its own OpenVINO model, and so does the parent afterwards."""
    engine = classifier(PULC, backend="openvino")
    assert engine.predictor._loaded_models == {}
    fork = multiprocessing.get_context("fork")
    parent_end, child_end = fork.Pipe()
    child = fork.Process(target=classify_in_child, args=(engine, child_end))
    child.start()
    assert parent_end.poll(60), "the forked child did not answer"
    assert parent_end.recv() == ["180"]
    child.join(30)
    assert child.exitcode == 0
    assert engine.predictor._loaded_models == {}
    assert engine.classify([image_bytes(ROT0)])[0]["label_names"] == ["0"]


def test_auto_falls_back_when_openvino_cannot_convert_the_model(monkeypatch, caplog):
    """No real model OpenVINO refuses is at hand offline, so its refusal is simulated: the rest
    (the fallback runtime, the warning) is real."""
    from clas_system.runtime import openvino_runtime

    def refuse(*_args):
        raise ModelError("inference.pdmodel: OpenVINO could not load the model: unsupported op")

    monkeypatch.setattr(openvino_runtime.OpenVinoPredictor, "__init__", refuse)
    engine = classifier(TEXT_LINE)
    assert engine.predictor.backend == "openvino"
    up, down = engine.classify([image_bytes(TEXT_UP), image_bytes(TEXT_DOWN)])
    assert (up["label_names"], down["label_names"]) == (["0"], ["180"])
    assert engine.predictor.backend == "paddle"
    assert "backend auto runs it on paddle instead" in caplog.text


# ---- served, one server per backend -----------------------------------------------------

# OpenVINO is what `auto` picks on CPU, so test_clas_serving.py's servers serve through it.
SERVED = [(TEXT_LINE, "paddle", [TEXT_UP, TEXT_DOWN], ["0", "180"]),
          (PULC, "onnxruntime", [ROT0, ROT180], ["0", "180"])]


@pytest.mark.parametrize("preset, backend, names, labels", SERVED, ids=[f"{p}-{b}" for p, b, *_ in SERVED])
def test_each_backend_serves_both_protocols_concurrently(server_factory, preset, backend, names, labels):
    server = server_factory(modules={"clas_system": {"preset": preset, "backend": backend, "cpu_threads": 1}})
    engine = classifier(preset, backend=backend)
    text, revert = ndarray_to_b64(np.stack([engine.preprocess(decode_image(image_bytes(n), to_rgb=engine.to_rgb))
                                            for n in names]))
    answers = {}

    def ask(key):
        if key % 2:
            answers[key] = server.post("clas_system", {"images": text, "revert_params": revert})
        else:
            answers[key] = {"files": Client(server.url).classify([image_bytes(n) for n in names])}

    threads = [threading.Thread(target=ask, args=(key,)) for key in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    local = engine.classify([image_bytes(n) for n in names])
    for key, answer in answers.items():
        results = answer["files"] if key % 2 == 0 else answer["results"]["prediction"]
        assert [r["label_names"][0] for r in results] == labels, (key, answer)
        np.testing.assert_allclose([r["scores"][0] for r in results], [r["scores"][0] for r in local], atol=1e-5)
    server.stop()
    assert f"{backend_name(backend)} " in server.log()


def backend_name(backend):
    return {"paddle": "Paddle Inference", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[backend]

