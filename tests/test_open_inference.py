"""The Open Inference Protocol (KServe v2 REST) end to end, called with the real `tritonclient[http]`
and its defaults (binary inputs and outputs), against one `hub serving start` serving all three
modules: the same answers as PaddleHub's route on the shared images, the same token, limits,
error statuses and metrics."""
import base64

import cv2
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clas_system import Client
from harness.payloads import SHARED_IMAGES, image_bytes, image_path

tritonclient_http = pytest.importorskip("tritonclient.http", reason="the test extra: pip install 'tritonclient[http]'")
from tritonclient.utils import InferenceServerException  # noqa: E402 - after the skip

TOKEN = "oip-token"
TEXT_LINES = ["textline/textline_orientation_test_0_0.png", "textline/textline_orientation_test_1_0.png"]
PHOTOS = ["drink/youjia.jpeg", "misc/coco_000000570688.jpg", "imagenet/ILSVRC2012_val_00000010.jpeg"]
SHARED = sorted(str(path.relative_to(SHARED_IMAGES)) for path in SHARED_IMAGES.rglob("*")
                if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
GALLERY = [("drink/youjia.jpeg", "youjia"), ("drink/nongfu_spring.jpeg", "nongfu_spring"),
           ("drink/mosilian.jpeg", "mosilian"), ("misc/wangzai.jpg", "wangzai")]


@pytest.fixture(scope="module")
def server(server_factory, tmp_path_factory):
    folder = tmp_path_factory.mktemp("oip")
    data_file = folder / "gallery.txt"
    data_file.write_text("".join(f"{path}\t{label}\n" for path, label in GALLERY))
    return server_factory(modules={
        "clas_system": {"api_token": TOKEN},
        "det_system": {"max_images_per_request": len(SHARED)},
        "rec_system": {"index_dir": str(folder / "gallery"), "data_file": str(data_file),
                       "image_root": str(SHARED_IMAGES), "feature": {"preset": "pplcnet_pulc_1280"}},
    })


@pytest.fixture(scope="module")
def triton(server):
    return tritonclient_http.InferenceServerClient(server.url.removeprefix("http://"))


def files_input(paths):
    tensor = tritonclient_http.InferInput("images", [len(paths)], "BYTES")
    tensor.set_data_from_numpy(np.array([image_bytes(p) for p in paths], dtype=np.object_))
    return tensor


def texts(array):
    return [[item.decode() for item in row] for row in array]


def test_health_and_metadata(triton, server):
    assert triton.is_server_live() and triton.is_server_ready()
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    for name in ("clas_system", "det_system", "rec_system"):
        assert triton.is_model_ready(name)
        metadata = triton.get_model_metadata(name)
        assert [tensor["name"] for tensor in metadata["inputs"]] == ["images", "pixels"]
    assert [o["name"] for o in triton.get_model_metadata("rec_system")["outputs"]] == [
        "boxes", "labels", "scores", "ids", "counts"]
    assert not triton.is_model_ready("nope")
    missing = requests.get(f"{server.url}/v2/models/nope", timeout=10)
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["error"]


def test_classify_matches_the_paddlehub_route(triton, server):
    """Every shared image; the text lines rightly."""
    expected = Client(server.url, token=TOKEN).classify([image_path(p) for p in SHARED], top_k=2)
    result = triton.infer("clas_system", [files_input(SHARED)], parameters={"top_k": 2},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert result.as_numpy("class_ids").tolist() == [r["class_ids"] for r in expected]
    assert texts(result.as_numpy("label_names")) == [r["label_names"] for r in expected]
    assert [expected[SHARED.index(p)]["label_names"] for p in TEXT_LINES] == [["0", "180"], ["180", "0"]]
    np.testing.assert_allclose(result.as_numpy("scores"), [r["scores"] for r in expected], rtol=1e-6)
    assert result.get_response()["model_name"] == "clas_system"


def test_pixels_input_and_json_outputs(triton):
    """A UINT8 [N, H, W, 3] tensor answers as its PNG file does; outputs asked for as JSON come as JSON."""
    pixels = np.stack([cv2.cvtColor(cv2.imread(image_path(p)), cv2.COLOR_BGR2RGB) for p in TEXT_LINES[:1]] * 2)
    tensor = tritonclient_http.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    outputs = [tritonclient_http.InferRequestedOutput("scores", binary_data=False),
               tritonclient_http.InferRequestedOutput("label_names")]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    result = triton.infer("clas_system", [tensor], outputs=outputs, headers=headers)
    from_files = triton.infer("clas_system", [files_input(TEXT_LINES[:1] * 2)], headers=headers)
    assert "data" in result.get_output("scores") and result.as_numpy("class_ids") is None
    np.testing.assert_allclose(result.as_numpy("scores"), from_files.as_numpy("scores"), rtol=1e-6)
    assert texts(result.as_numpy("label_names")) == [["0"], ["0"]]  # top_k 1: the default


def test_detect_matches_the_paddlehub_route(triton, server):
    photos = SHARED[::2]  # every other: the saliency model is the costly one on two cores
    result = triton.infer("det_system", [files_input(photos)], parameters={"threshold": 0.2})
    expected = Client(server.url).detect([image_path(p) for p in photos], threshold=0.2)
    counts = result.as_numpy("counts").tolist()
    assert counts == [len(boxes) for boxes in expected] and max(counts) >= 1
    for i, boxes in enumerate(expected):
        np.testing.assert_allclose(result.as_numpy("boxes")[i, :counts[i]],
                                   np.reshape([b["bbox"] for b in boxes], (-1, 4)), rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("scores")[i, :counts[i]], [b["score"] for b in boxes], rtol=1e-6)
        assert texts(result.as_numpy("labels"))[i][:counts[i]] == [b["label"] for b in boxes]


def test_recognize_matches_the_paddlehub_route(triton, server):
    queries = [path for path, _ in GALLERY] + SHARED[::3]  # every third: each costs the detector and its regions
    expected = Client(server.url).recognize([image_path(p) for p in queries])
    result = triton.infer("rec_system", [files_input(queries)])
    counts = result.as_numpy("counts").tolist()
    assert counts == [len(regions) for regions in expected]
    labels, ids = texts(result.as_numpy("labels")), result.as_numpy("ids").tolist()
    for i, regions in enumerate(expected):
        assert labels[i][:counts[i]] == [r["rec_docs"] for r in regions]
        assert ids[i][:counts[i]] == [r["rec_id"] for r in regions]
        np.testing.assert_allclose(result.as_numpy("boxes")[i, :counts[i]],
                                   np.reshape([r["bbox"] for r in regions], (-1, 4)))
        np.testing.assert_allclose(result.as_numpy("scores")[i, :counts[i]], [r["rec_scores"] for r in regions],
                                   rtol=1e-6)
    assert [row[0] for row in labels[:len(GALLERY)]] == [label for _, label in GALLERY]


def refusal(call):
    with pytest.raises(InferenceServerException) as caught:
        call()
    return int(caught.value.status()), caught.value.message()


def test_errors_have_the_paddlehub_routes_statuses(triton, server):
    status, message = refusal(lambda: triton.infer("clas_system", [files_input(TEXT_LINES)]))
    assert status == 401 and "Authorization: Bearer" in message
    bad = tritonclient_http.InferInput("images", [2], "BYTES")
    bad.set_data_from_numpy(np.array([image_bytes(PHOTOS[0]), b"not an image"], dtype=np.object_))
    status, message = refusal(lambda: triton.infer("det_system", [bad]))
    assert status == 400 and message.startswith("images[1]: ")
    status, message = refusal(lambda: triton.infer("det_system", [files_input(SHARED + PHOTOS[:1])]))
    assert status == 413 and f"over the limit of {len(SHARED)}" in message
    status, message = refusal(lambda: triton.infer("det_system", [files_input(PHOTOS)], parameters={"top_k": 1}))
    assert status == 400 and "parameters.top_k: not a parameter of det_system" in message
    status, message = refusal(lambda: triton.infer("rec_system", [files_input(PHOTOS)],
                                                   parameters={"score_thres": "high"}))
    assert status == 400 and "score_thres" in message
    garbled = requests.post(f"{server.url}/v2/models/det_system/infer", data=b'{"inputs": [}', timeout=10)
    assert garbled.status_code == 400 and set(garbled.json()) == {"error"}


def test_a_plain_json_request(server):
    """Plain JSON, no binary extension (what curl sends): base64 BYTES in, JSON outputs out."""
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(image_bytes(PHOTOS[0])).decode()]}],
            "parameters": {"max_det_results": 1}}
    answer = requests.post(f"{server.url}/v2/models/det_system/infer", json=body, timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["counts"]["data"] == [1] and outputs["boxes"]["shape"] == [1, 1, 4]


def test_metrics_count_open_inference_requests(triton, server):
    def answered(module, code):
        text = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "clas_requests_total" and sample.labels == {"module": module, "code": code})

    before = answered("det_system", "ok"), answered("det_system", "bad_request")
    triton.infer("det_system", [files_input(PHOTOS[:1])])
    refusal(lambda: triton.infer("det_system", [files_input(PHOTOS)], parameters={"nope": 1}))
    assert (answered("det_system", "ok"), answered("det_system", "bad_request")) == (before[0] + 1, before[1] + 1)
