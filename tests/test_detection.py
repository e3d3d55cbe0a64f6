"""Mainbody detection: the engine in-process, then det_system over a real `hub serving start`.

Two detectors: the built-in U²-Net-p saliency detector (the default), checked against products
boxed by hand in tests/data/product_query_boxes.json; and, for the PaddleDetection export path,
the generated fixture of fixtures_detector.py (no real PicoDet mainbody detector is available
offline): fixed boxes at fixed scores, so every coordinate can be checked exactly.
"""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures_detector import export_fixture_detector

from clas_system import Client
from clas_system.errors import BadRequest
from clas_system.ops.decode import decode_image
from clas_system.ops.detect_preprocess import build_detect_preprocess
from clas_system.serving.detect import detect_request
from clas_system.tasks.detect import build_batcher, build_detector
from clas_system.tasks.detect.boxes import boxes_to_results, clip_and_sort
from clas_system.tasks.detect.saliency import saliency_boxes
from harness.payloads import b64, image_bytes
from params import ParamsError
from params.detector import PPSHITU_DET_PREPROCESS, SaliencySettings, load_detector_settings, parse_det_ops

IMAGENET = "imagenet/ILSVRC2012_val_00006666.JPEG"  # 500 x 368
COCO = "misc/coco_000000570688.jpg"  # 640 x 480
HAND_BOXES = json.loads((Path(__file__).with_name("data") / "product_query_boxes.json").read_text())
PRODUCT_QUERIES = sorted(name for name in HAND_BOXES if not name.startswith("_"))


@pytest.fixture(scope="session")
def fixture_detector(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fixture_detector")
    return directory, export_fixture_detector(directory)


@pytest.fixture(scope="session")
def detector(fixture_detector):
    return build_detector(load_detector_settings({"model_dir": str(fixture_detector[0])}))


def expected_results(expected, name, threshold=0.2, max_det_results=5):
    """The fixture's boxes mapped to the original image's pixels and clipped to it."""
    height, width = decode_image(image_bytes(name)).shape[:2]
    target_h, target_w = expected["target_size"]
    results = []
    for class_id, score, x1, y1, x2, y2 in expected["boxes"]:
        if score >= threshold and len(results) < max_det_results:
            box = [x1 * width / target_w, y1 * height / target_h, x2 * width / target_w, y2 * height / target_h]
            results.append({"bbox": [min(box[0], width), min(box[1], height), min(box[2], width), min(box[3], height)],
                            "score": score, "label": expected["label_list"][class_id]})
    return results


def assert_same_results(actual, expected):
    assert [[r["label"] for r in image] for image in actual] == [[r["label"] for r in image] for image in expected]
    for got_image, want_image in zip(actual, expected):
        for got, want in zip(got_image, want_image):
            assert got["bbox"] == pytest.approx(want["bbox"], rel=1e-3)
            assert got["score"] == pytest.approx(want["score"], rel=1e-3)


def paddledetection_reference_input(image, target_size, keep_ratio, stride=0):
    """PaddleDetection deploy/python/preprocess.py written out: Resize by fx/fy (interp 2),
    NormalizeImage (is_scale, ImageNet mean/std), Permute, PadStride."""
    h, w = image.shape[:2]
    if keep_ratio:
        scale = min(target_size) / min(h, w)
        if np.round(scale * max(h, w)) > max(target_size):
            scale = max(target_size) / max(h, w)
        scale_y = scale_x = scale
    else:
        scale_y, scale_x = target_size[0] / h, target_size[1] / w
    im = cv2.resize(image, None, None, fx=scale_x, fy=scale_y, interpolation=2)
    im_shape = im.shape[:2]
    im = im.astype(np.float32) / 255.0
    im = (im - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    im = im.transpose(2, 0, 1).astype(np.float32)
    if stride:
        padded = np.zeros((3, -(-im.shape[1] // stride) * stride, -(-im.shape[2] // stride) * stride), np.float32)
        padded[:, :im.shape[1], :im.shape[2]] = im
        im = padded
    return im, im_shape, (scale_y, scale_x)


# ---- settings ----------------------------------------------------------------------------

def test_settings_read_infer_cfg(fixture_detector):
    directory, expected = fixture_detector
    settings = load_detector_settings({"model_dir": str(directory)})
    assert settings.labels == tuple(expected["label_list"])
    assert settings.preprocess[0].target_size == expected["target_size"]
    assert (settings.threshold, settings.max_det_results) == (0.2, 5)


def test_without_infer_cfg_the_ppshitu_defaults_apply(fixture_detector, tmp_path):
    model_dir = shutil.copytree(fixture_detector[0], tmp_path / "model", ignore=shutil.ignore_patterns("*.yml"))
    settings = load_detector_settings({"model_dir": str(model_dir)})
    assert settings.preprocess == parse_det_ops(PPSHITU_DET_PREPROCESS, "defaults")
    assert settings.preprocess[0].target_size == (640, 640) and settings.preprocess[0].interp == 2
    assert settings.labels == ("foreground",)


def test_without_model_dir_the_builtin_saliency_detector_is_used():
    settings = load_detector_settings({})
    assert isinstance(settings, SaliencySettings)
    assert settings.model_path.endswith("u2netp.onnx")
    assert (settings.mask_threshold, settings.min_area, settings.labels) == (0.5, 0.01, ("foreground",))


@pytest.mark.parametrize("params, message", [
    ({"threshold": 1.5}, "det_system.threshold: 1.5 is too large"),
    ({"max_det_results": 0}, "det_system.max_det_results: 0 is too small"),
    ({"preprocess": [{"type": "LetterBoxResize", "target_size": 640}, {"type": "Permute"}]},
     "det_system.preprocess[0]: unknown op 'LetterBoxResize'"),
    ({"preprocess": [{"type": "Resize", "target_size": [0, 640]}, {"type": "Permute"}]},
     "det_system.preprocess[0].Resize.target_size: expected a positive int or [height, width]"),
    ({"preprocess": [{"type": "Resize", "target_size": 640}]}, "det_system.preprocess: needs exactly one Permute"),
    ({"preprocess": [{"type": "PadStride", "stride": 32}, {"type": "Permute"}]},
     "det_system.preprocess[0]: PadStride pads the CHW tensor; put it after Permute"),
])
def test_bad_settings_name_the_key(fixture_detector, params, message):
    params = {"model_dir": str(fixture_detector[0]), **params}
    with pytest.raises(ParamsError) as info:
        load_detector_settings(params)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("params, message", [
    ({"saliency": {"mask_threshold": 1.2}}, "det_system.saliency.mask_threshold: 1.2 is too large"),
    ({"saliency": {"min_areas": 0.1}}, "det_system.saliency.min_areas: unknown setting"),
    ({"preprocess": [{"type": "Permute"}]}, "det_system.preprocess: the built-in saliency detector has fixed"),
    ({"model_dir": "FIXTURE", "saliency": {"min_area": 0.1}}, "det_system.saliency: applies to the built-in"),
])
def test_bad_saliency_settings_name_the_key(fixture_detector, params, message):
    if params.get("model_dir") == "FIXTURE":
        params = {**params, "model_dir": str(fixture_detector[0])}
    with pytest.raises(ParamsError) as info:
        load_detector_settings(params)
    assert str(info.value).startswith(message)


def test_saliency_regions_become_boxes_in_original_pixels():
    saliency = np.zeros((320, 320), np.float32)
    saliency[32:160, 64:128] = 0.8  # 64 x 128 region
    saliency[200:300, 200:300] = 1.0
    saliency[0:2, 0:2] = 1.0  # 4 pixels: under min_area
    boxes = saliency_boxes(saliency, (640, 960), mask_threshold=0.5, min_area=0.01)
    assert boxes.tolist() == [[0, 1.0, 600, 400, 900, 600], [0, pytest.approx(0.8), 192, 64, 384, 320]]
    assert saliency_boxes(np.zeros((320, 320), np.float32), (10, 10), 0.5, 0.01).shape == (0, 6)


def test_paddleclas_op_spelling_is_accepted():
    ops = parse_det_ops([{"DetResize": {"target_size": [640, 640], "keep_ratio": False, "interp": 2}},
                         {"DetNormalizeImage": {"is_scale": True}}, {"DetPermute": {}}], "ops")
    assert ops == parse_det_ops(PPSHITU_DET_PREPROCESS, "ops")


# ---- preprocess --------------------------------------------------------------------------

@pytest.mark.parametrize("target_size, keep_ratio, stride", [
    ([640, 640], False, 0), ([320, 416], False, 0), ([800, 1333], True, 32), ([608, 608], True, 0)])
@pytest.mark.parametrize("name", [IMAGENET, COCO])
def test_preprocess_equals_paddledetection_deploy(name, target_size, keep_ratio, stride):
    entries = [{"type": "Resize", "target_size": target_size, "keep_ratio": keep_ratio, "interp": 2},
               {"type": "NormalizeImage", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "is_scale": True},
               {"type": "Permute"}, {"type": "PadStride", "stride": stride}]
    image = decode_image(image_bytes(name))
    result = build_detect_preprocess(parse_det_ops(entries, "ops"))(image)
    tensor, im_shape, scale_factor = paddledetection_reference_input(image, target_size, keep_ratio, stride)
    np.testing.assert_allclose(result.tensor, tensor, atol=1e-5)
    assert result.im_shape.tolist() == list(im_shape)
    np.testing.assert_allclose(result.scale_factor, scale_factor, rtol=1e-6)
    assert result.image_size == image.shape[:2]


# ---- engine ------------------------------------------------------------------------------

def test_boxes_are_thresholded_mapped_and_clipped_for_two_image_sizes(detector, fixture_detector):
    expected = fixture_detector[1]
    results = detector.detect_images([decode_image(image_bytes(IMAGENET)), decode_image(image_bytes(COCO))])
    assert [len(r) for r in results] == [4, 4]
    assert_same_results(results, [expected_results(expected, IMAGENET), expected_results(expected, COCO)])
    assert results[0][1]["bbox"][2] == 500.0 and results[1][1]["bbox"][2] == 640.0  # clipped right edges


def test_threshold_and_max_det_results_per_call(detector, fixture_detector):
    image = decode_image(image_bytes(COCO))
    assert_same_results(detector.detect_images([image], threshold=0.0, max_det_results=10),
                        [expected_results(fixture_detector[1], COCO, threshold=0.0, max_det_results=10)])
    assert [r["score"] for r in detector.detect_images([image], max_det_results=2)[0]] == pytest.approx([0.95, 0.8])
    assert detector.detect_images([image], threshold=0.99) == [[]]


def test_keep_ratio_batch_of_different_shapes_equals_one_by_one(fixture_detector):
    params = {"model_dir": str(fixture_detector[0]),
              "preprocess": [{"type": "Resize", "target_size": [320, 480], "keep_ratio": True, "interp": 2},
                             {"type": "NormalizeImage"}, {"type": "Permute"}]}
    detector = build_detector(load_detector_settings(params))
    images = [decode_image(image_bytes(name)) for name in (IMAGENET, COCO, IMAGENET)]
    inputs = [detector.preprocess(image) for image in images]
    assert inputs[0].tensor.shape != inputs[1].tensor.shape
    together = detector.predict_inputs(inputs)
    for item, boxes in zip(inputs, together):
        np.testing.assert_array_equal(boxes, detector.predict_inputs([item])[0])
    height, width = images[1].shape[:2]
    assert together[1][0, 2:].tolist() == pytest.approx([0.1 * width, 0.15 * height, 0.9 * width, 0.85 * height],
                                                        rel=1e-2)


def test_clip_and_sort_drops_placeholders_and_boxes_outside():
    raw = np.array([[-1, 0.0, 0, 0, 0, 0],  # PaddleDetection's "nothing found" row
                    [0, 0.3, 10, 10, 50, 50],
                    [0, 0.9, 120, 10, 150, 50],  # entirely right of the image
                    [1, 0.7, -5, -5, 90, 200]], np.float32)
    boxes = clip_and_sort(raw, (100, 100))
    assert boxes.tolist() == [[1, pytest.approx(0.7), 0, 0, 90, 100], [0, pytest.approx(0.3), 10, 10, 50, 50]]
    assert boxes_to_results(boxes, ("a", "b"), 0.5, 5) == [
        {"bbox": [0.0, 0.0, 90.0, 100.0], "score": pytest.approx(0.7), "label": "b"}]
    assert boxes_to_results(boxes[:0], ("a",), 0.0, 5) == []


def test_request_checks_every_image_and_field(detector):
    batcher = build_batcher(detector)
    good = b64(image_bytes(COCO))
    body = detect_request(detector, batcher, {"images": [good], "threshold": 0.5, "max_det_results": 1})
    assert [r["score"] for r in body["prediction"][0]] == pytest.approx([0.95])
    with pytest.raises(BadRequest, match=r"images\[1\]: .*; images\[2\]: "):
        detect_request(detector, batcher, {"images": [good, b64(b"not an image"), b64(b"\xff\xd8 broken")]})
    with pytest.raises(BadRequest, match="threshold: expected a number from 0 to 1"):
        detect_request(detector, batcher, {"images": [good], "threshold": 2})
    with pytest.raises(BadRequest, match="unknown field"):
        detect_request(detector, batcher, {"images": [good], "top_k": 1})


# ---- det_system over HTTP ----------------------------------------------------------------

@pytest.fixture(scope="module")
def det_server(server_factory, fixture_detector):
    return server_factory(modules={"det_system": {"model_dir": str(fixture_detector[0])}})


def test_served_boxes_are_thresholded_mapped_and_clipped(det_server, fixture_detector):
    body = det_server.post("det_system", {"images": [b64(image_bytes(IMAGENET)), b64(image_bytes(COCO))]})
    assert body["status"] == "000", body
    prediction = body["results"]["prediction"]
    assert [len(r) for r in prediction] == [4, 4]
    expected = fixture_detector[1]
    assert_same_results(prediction, [expected_results(expected, IMAGENET), expected_results(expected, COCO)])


def test_client_detect_and_bad_image_then_keeps_serving(det_server, fixture_detector):
    body = det_server.post("det_system", {"images": [b64(image_bytes(COCO)), b64(b"\xff\xd8 broken")]})
    assert body["status"] == "101" and "images[1]" in body["msg"], body
    assert "images[0]" not in body["msg"]
    results = Client(det_server.url).detect([image_bytes(COCO)])
    assert_same_results(results, [expected_results(fixture_detector[1], COCO)])


def test_max_det_results_from_init_args(server_factory, fixture_detector):
    server = server_factory(modules={"det_system": {"model_dir": str(fixture_detector[0]), "max_det_results": 3}})
    body = server.post("det_system", {"images": [b64(image_bytes(IMAGENET))]})
    assert body["status"] == "000", body
    assert_same_results(body["results"]["prediction"],
                        [expected_results(fixture_detector[1], IMAGENET, max_det_results=3)])


def iou(a, b):
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_default_det_system_boxes_every_product_drawn_by_hand(server_factory):
    server = server_factory(modules={"det_system": {}})
    images = [b64(image_bytes(f"product/query/{name}")) for name in PRODUCT_QUERIES]
    body = server.post("det_system", {"images": images})
    assert body["status"] == "000", body
    for name, found in zip(PRODUCT_QUERIES, body["results"]["prediction"]):
        assert all(box["label"] == "foreground" and 0.2 <= box["score"] <= 1.0 for box in found)
        for drawn in HAND_BOXES[name]:
            best = max(iou(drawn, box["bbox"]) for box in found)
            assert best >= 0.8, f"{name}: hand-drawn box {drawn} best IoU {best:.2f} with {found}"


def test_paddle3_json_export_runs(tmp_path):
    export_fixture_detector(tmp_path, program_format="json")
    detector = build_detector(load_detector_settings({"model_dir": str(tmp_path)}))
    assert len(detector.detect_images([decode_image(image_bytes(COCO))])[0]) == 4
