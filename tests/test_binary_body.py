"""Image files posted as they are to PaddleHub's route (serving.binary_body): one image file as
the body, or multipart/form-data with several; real servers, real packaged models. Each answer
equals the JSON/base64 one; a malformed binary body is refused naming what is wrong."""
import pytest
import requests

from clas_system import Client
from harness.payloads import SHARED_IMAGES, b64, image_bytes

MODULE = "clas_system"
TEXT_UP = "textline/textline_orientation_test_0_0.png"
ROT180 = "orientation/img_rot180_demo.jpg"
SHARED = sorted(str(p.relative_to(SHARED_IMAGES)) for p in SHARED_IMAGES.glob("*/*")
                if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


@pytest.fixture(scope="module")
def pulc_server(server_factory):
    return server_factory(modules={MODULE: {"preset": "text_image_orientation", "max_images_per_request": 32}})


@pytest.fixture(scope="module")
def text_line_server(server_factory):
    return server_factory(modules={MODULE: {}})


def predict(server, **kwargs):
    response = requests.post(server.predict_url(MODULE), timeout=60, **kwargs)
    return response.status_code, response.json()


def json_prediction(server, names, top_k=4):
    status, body = predict(server, json={"images": [b64(image_bytes(n)) for n in names], "top_k": top_k})
    assert status == 200 and body["status"] == "000", body
    return body["results"]["prediction"]


def form(names, **fields):
    return {"files": [("images", (n.rsplit("/", 1)[1], image_bytes(n), "image/jpeg")) for n in names] +
            [(name, (None, value)) for name, value in fields.items()]}


def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["class_ids"] == b["class_ids"] and a["label_names"] == b["label_names"]
        assert a["scores"] == b["scores"]


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "application/octet-stream"])
def test_one_image_as_the_body_answers_as_json_does(pulc_server, content_type):
    for name in (ROT180, TEXT_UP):
        status, body = predict(pulc_server, data=image_bytes(name), params={"top_k": 4},
                               headers={"Content-Type": content_type})
        assert status == 200 and body["status"] == "000", body
        assert_same(body["results"]["prediction"], json_prediction(pulc_server, [name]))


def test_multipart_images_in_order_top1_identical_on_every_shared_image(pulc_server, text_line_server):
    for server in (pulc_server, text_line_server):
        status, body = predict(server, **form(SHARED, top_k="2"))
        assert status == 200 and body["status"] == "000", body
        got = body["results"]["prediction"]
        assert_same(got, json_prediction(server, SHARED, top_k=2))
        assert all(len(r["class_ids"]) == 2 for r in got)


def test_client_sends_multipart_and_falls_back_to_json(pulc_server, server_factory):
    names = [ROT180, "imagenet/ILSVRC2012_val_00006666.JPEG", TEXT_UP]
    binary = Client(pulc_server.url)
    assert_same(binary.classify([image_bytes(n) for n in names], top_k=3), json_prediction(pulc_server, names, 3))
    assert binary.binary
    # PaddleHub's own runner (request_threads 0) reads JSON only: the client switches to it
    paddlehub_runner = server_factory(modules={MODULE: {"request_threads": 0}})
    client = Client(paddlehub_runner.url)
    assert [r["label_names"][0] for r in client.classify([image_bytes(TEXT_UP)])] == ["0"]
    assert not client.binary


# (content type, body, query, expected HTTP status, texts in msg)
BAD_BINARY = [
    pytest.param("multipart/form-data", b"--x\r\n\r\n--x--\r\n", {}, 400,
                 ["Content-Type: multipart/form-data needs its boundary"], id="multipart-no-boundary"),
    pytest.param("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="images"\r\n\r\nab',
                 {}, 400, ["body: multipart body without its closing boundary --x--"], id="multipart-truncated"),
    pytest.param("multipart/form-data; boundary=x", b"--x\r\nno headers end\r\n--x--\r\n", {}, 400,
                 ["body: multipart part 0 has no blank line after its headers"], id="multipart-part-without-headers"),
    pytest.param("multipart/form-data; boundary=x", b"--x\r\nContent-Type: image/png\r\n\r\nab\r\n--x--\r\n", {}, 400,
                 ["body: multipart part 0 has no Content-Disposition name"], id="multipart-part-without-name"),
    pytest.param("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n2'
                 b"\r\n--x--\r\n", {}, 400, ["images: missing"], id="multipart-without-images"),
    pytest.param("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="images"\r\n\r\n'
                 b"not an image\r\n--x--\r\n", {}, 400, ["images[0]: not a decodable image"], id="multipart-not-an-image"),
    pytest.param("image/jpeg", b"", {}, 400, ["images[0]: empty image (0 bytes)"], id="empty-image-body"),
    pytest.param("image/jpeg", b"GIF89a not really", {}, 400, ["images[0]: not a decodable image"], id="not-an-image"),
    pytest.param("image/jpeg", None, {"top_k": "two"}, 400, ["top_k: expected a whole number"], id="top_k-text"),
    pytest.param("image/jpeg", None, {"colour": "red"}, 400, ["unknown field(s) 'colour'"], id="unknown-field"),
    pytest.param("image/jpeg", None, {"images": "x"}, 400, ["images: with an image body, the body is the image"],
                 id="images-in-query"),
    pytest.param("image/jpeg", None, "top_k=1&top_k=2", 400, ["top_k: given twice in the query string"],
                 id="field-twice"),
]


@pytest.mark.parametrize("content_type, data, query, http_status, texts", BAD_BINARY)
def test_bad_binary_body_is_refused_naming_the_problem(pulc_server, content_type, data, query, http_status, texts):
    status, body = predict(pulc_server, data=image_bytes(ROT180) if data is None else data, params=query,
                           headers={"Content-Type": content_type})
    assert status == http_status and body["status"] == "101", body
    assert body["error"]["code"] == "bad_request"
    for text in texts:
        assert text in body["msg"], body["msg"]
    assert predict(pulc_server, data=image_bytes(ROT180), headers={"Content-Type": "image/jpeg"})[1]["status"] == "000"


def test_binary_images_within_the_limits(server_factory):
    server = server_factory(modules={MODULE: {"max_images_per_request": 2, "max_request_bytes": 200_000}})
    status, body = predict(server, **form([ROT180] * 3))
    assert status == 413 and "images: 3 images, over the limit of 2" in body["msg"], body
    status, body = predict(server, **form(["drink/youjia.jpeg", "imagenet/ILSVRC2012_val_00006666.JPEG"]))
    assert status == 413 and "more than 200000 bytes of image data" in body["msg"], body
