"""clas_system against hostile input, over real HTTP: every bad request gets a clear refusal, and
the server keeps serving.

Policy under test: a request is refused as a whole (PaddleHub status "101") when anything in it
is wrong; the message names the field and, for images, every bad image by index (`images[3]`),
so a client can fix all of them at once. No image of a refused request reaches the model, and a
server-side path is never read. Images are checked by their declared size before any pixel is
decoded (decompression bombs). Unusual but valid images (alpha, 16-bit, grey, CMYK, palette,
1x1, webp, bmp) are converted and classified, not refused.
"""
import io
import os

import numpy as np
import pytest
import requests
from PIL import Image

from harness.payloads import b64, encode, image_bytes, jpeg_declaring, png_declaring
from harness.process_stats import group_rss_kb

MODULE = "clas_system"
TEXT_UP = "textline/textline_orientation_test_0_0.png"
LIMITS = {"max_images_per_request": 8, "max_image_pixels": 20_000_000, "max_request_bytes": 4_000_000}
INPUT_SHAPE = [3, 48, 192]  # the default text-line model's input (ResizeByHeight 48, PadToSize 192)
MAX_RSS_GROWTH_KB = 500 * 1024


def upright():
    """The upright text line (RGBA PNG), labelled "0" by the default model."""
    return Image.open(io.BytesIO(image_bytes(TEXT_UP)))


def valid():
    return b64(image_bytes(TEXT_UP))


def mpo():
    """A multi-picture JPEG (as many phone cameras write): PIL calls its format MPO."""
    first = upright().convert("RGB")
    return encode(first, "MPO", save_all=True, append_images=[first.rotate(180)])


def truncated_jpeg():
    data = encode(upright().convert("RGB"), "JPEG")
    return data[:len(data) // 2]


def ndarray_request(shape, dtype="float32", data=None, **extra):
    if data is None:
        data = np.zeros(shape, dtype).tobytes()
    return {"images": b64(data), "revert_params": {"shape": shape, "dtype": dtype}, **extra}


def assert_valid_result(result):
    assert set(result) >= {"class_ids", "scores", "label_names"}, result
    assert len(result["class_ids"]) == len(result["scores"]) == len(result["label_names"]) >= 1
    assert all(isinstance(i, int) for i in result["class_ids"])
    assert all(0.0 <= s <= 1.0 for s in result["scores"])
    assert sum(result["scores"]) <= 1.0 + 1e-4
    assert result["scores"] == sorted(result["scores"], reverse=True)


def assert_still_serving(server, headers=None):
    body = server.post(MODULE, {"images": [valid()]}, headers=headers)
    assert body["status"] == "000", body
    assert body["results"]["prediction"][0]["label_names"][0] == "0"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(modules={MODULE: dict(LIMITS)})


# (payload factory, substrings the message must contain); ids say what is hostile about it.
HOSTILE = [
    # the images field
    pytest.param(dict, ["images: missing"], id="images-missing"),
    pytest.param(lambda: {"top_k": 1}, ["images: missing"], id="images-missing-with-top_k"),
    pytest.param(lambda: {"images": {"0": valid()}}, ["images: expected a list", "got an object"],
                 id="images-dict"),
    pytest.param(lambda: {"images": 42}, ["images: expected a list", "got a number"], id="images-number"),
    pytest.param(lambda: {"images": None}, ["images: expected a list", "got null"], id="images-null"),
    pytest.param(lambda: {"images": []}, ["images: empty list"], id="images-empty-list"),
    pytest.param(lambda: {"images": [valid()] * 9}, ["images: 9 images, over the limit of 8"],
                 id="nine-images-over-limit-8"),
    pytest.param(lambda: {"images": valid()}, ["images: expected a list of base64 image files", "revert_params"],
                 id="images-one-string-without-revert_params"),
    # items of images
    pytest.param(lambda: {"images": [7]}, ["images[0]: expected a base64 string, got a number"], id="item-int"),
    pytest.param(lambda: {"images": [None]}, ["images[0]: expected a base64 string, got null"], id="item-null"),
    pytest.param(lambda: {"images": [{"data": valid()}]}, ["images[0]: expected a base64 string, got an object"],
                 id="item-dict"),
    pytest.param(lambda: {"images": ["not*base64!"]}, ["images[0]: not valid base64"], id="invalid-base64"),
    pytest.param(lambda: {"images": [valid()[:-3]]}, ["images[0]: not valid base64"], id="base64-bad-padding"),
    pytest.param(lambda: {"images": ["data:image/png," + valid()]}, ["images[0]: a data: URL must be base64"],
                 id="data-url-not-base64"),
    pytest.param(lambda: {"images": [b64(b"%PDF-1.4 certainly not an image " * 8)]},
                 ["images[0]: not a decodable image"], id="base64-of-non-image"),
    pytest.param(lambda: {"images": [""]}, ["images[0]: empty image (0 bytes)"], id="zero-byte-image"),
    pytest.param(lambda: {"images": [b64(truncated_jpeg())]}, ["images[0]: truncated JPEG"], id="truncated-jpeg"),
    pytest.param(lambda: {"images": [b64(mpo()[:-300])]}, ["images[0]: truncated JPEG"], id="truncated-mpo"),
    pytest.param(lambda: {"images": [b64(image_bytes(TEXT_UP)[:-100])]},
                 ["images[0]: PNG data could not be decoded (corrupt or truncated)"], id="truncated-png"),
    pytest.param(lambda: {"images": [b64(image_bytes(TEXT_UP)[:2000])]}, ["images[0]: not a decodable image"],
                 id="png-cut-inside-its-header"),
    pytest.param(lambda: {"images": [b64(encode(upright(), "ICO"))]}, ["images[0]: ICO data could not be decoded"],
                 id="format-opencv-cannot-decode"),
    # decompression bombs and oversized images: refused by the declared size, never decoded
    pytest.param(lambda: {"images": [b64(png_declaring(50000, 50000))]},
                 ["images[0]: image is too large to decode", "2500000000 pixels"], id="png-bomb-50000x50000"),
    pytest.param(lambda: {"images": [b64(jpeg_declaring(50000, 50000))]},
                 ["images[0]: image is too large to decode", "2500000000 pixels"], id="jpeg-bomb-50000x50000"),
    pytest.param(lambda: {"images": [valid(), b64(png_declaring(5000, 5000))]},
                 ["images[1]: 5000x5000 is 25000000 pixels, over the limit of 20000000"],
                 id="png-declaring-5000x5000-over-max_image_pixels"),
    pytest.param(lambda: {"images": [b64(encode(Image.new("L", (5000, 4500)), "PNG"))]},
                 ["images[0]: 5000x4500 is 22500000 pixels, over the limit of 20000000"],
                 id="real-png-5000x4500-over-max_image_pixels"),
    # one answer lists every bad image; the good ones are not classified either
    pytest.param(lambda: {"images": [valid(), "***", valid(), b64(b"no image"), None, b64(truncated_jpeg()), valid()]},
                 ["images[1]: not valid base64", "images[3]: not a decodable image",
                  "images[4]: expected a base64 string", "images[5]: truncated JPEG"],
                 id="mixed-valid-and-invalid-lists-every-bad-index"),
    # top_k
    pytest.param(lambda: {"images": [valid()], "top_k": "5"}, ["top_k: expected a whole number >= 1, got '5'"],
                 id="top_k-string"),
    pytest.param(lambda: {"images": [valid()], "top_k": 1.5}, ["top_k: expected a whole number >= 1, got 1.5"],
                 id="top_k-float"),
    pytest.param(lambda: {"images": [valid()], "top_k": True}, ["top_k: expected a whole number >= 1, got True"],
                 id="top_k-bool"),
    pytest.param(lambda: {"images": [valid()], "top_k": 0}, ["top_k: expected a whole number >= 1, got 0"],
                 id="top_k-zero"),
    pytest.param(lambda: {"images": [valid()], "top_k": -1}, ["top_k: expected a whole number >= 1, got -1"],
                 id="top_k-negative"),
    pytest.param(lambda: {"images": [valid()], "top_k": 10**9}, ["top_k: 1000000000 is over the maximum of 1000"],
                 id="top_k-huge"),
    # fields
    pytest.param(lambda: {"images": [valid()], "topk": 1}, ["unknown field(s) 'topk'", "allowed: images"],
                 id="unknown-field"),
    pytest.param(lambda: {"images": [valid()], "b": 1, "a": 2}, ["unknown field(s) 'a', 'b'"],
                 id="two-unknown-fields"),
    pytest.param(lambda: {"images": [valid()], "self": 1}, ["'self'"], id="field-named-self"),
    pytest.param(lambda: {"images": [valid()], "url": "http://127.0.0.1:9/x.jpg"}, ["unknown field(s) 'url'"],
                 id="field-url"),
    pytest.param(lambda: {"images": [valid()], "image_dir": "/etc"}, ["unknown field(s) 'image_dir'"],
                 id="field-image_dir"),
    # PaddleClas's reference ndarray protocol
    pytest.param(lambda: ndarray_request([1, 3, 32, 32]),
                 ["revert_params.shape: [1, 3, 32, 32] does not fit this model", "expected [N, 3, 48, 192]"],
                 id="ndarray-wrong-shape"),
    pytest.param(lambda: ndarray_request([3, 48, 192]), ["revert_params.shape: [3, 48, 192] does not fit"],
                 id="ndarray-3d-shape"),
    pytest.param(lambda: ndarray_request([1, *INPUT_SHAPE], "float64"),
                 ["revert_params.dtype: 'float64' is not supported"], id="ndarray-wrong-dtype"),
    pytest.param(lambda: ndarray_request([1, *INPUT_SHAPE], ["float32"], data=b"\0" * 110592),
                 ["revert_params.dtype: ['float32'] is not supported"], id="ndarray-dtype-not-string"),
    pytest.param(lambda: ndarray_request([1, *INPUT_SHAPE], data=b"\0" * 100),
                 ["images: 100 bytes do not match revert_params shape [1, 3, 48, 192] of float32 (110592 bytes)"],
                 id="ndarray-byte-count-mismatch"),
    pytest.param(lambda: ndarray_request([1, -3, 48, 192], data=b""),
                 ["revert_params.shape: expected a list of positive ints, got [1, -3, 48, 192]"],
                 id="ndarray-negative-dim"),
    pytest.param(lambda: ndarray_request([0, *INPUT_SHAPE], data=b""),
                 ["revert_params.shape: expected a list of positive ints, got [0, 3, 48, 192]"],
                 id="ndarray-zero-dim"),
    pytest.param(lambda: ndarray_request([], data=b""), ["revert_params.shape: expected a list of positive ints"],
                 id="ndarray-empty-shape"),
    pytest.param(lambda: ndarray_request("1,3,48,192", data=b""), ["revert_params.shape: expected a list"],
                 id="ndarray-shape-string"),
    pytest.param(lambda: ndarray_request([2**32, 2**32], data=b""),
                 ["revert_params.shape: [4294967296, 4294967296] is", "over the limit of"],
                 id="ndarray-shape-overflowing-int64"),
    pytest.param(lambda: ndarray_request([9, *INPUT_SHAPE]), ["images: 9 images, over the limit of 8"],
                 id="ndarray-nine-images"),
    pytest.param(lambda: ndarray_request([1, *INPUT_SHAPE], data=np.full([1, *INPUT_SHAPE], np.nan, "f4").tobytes()),
                 ["images: the batch holds NaN or infinite values"], id="ndarray-nan"),
    pytest.param(lambda: {"images": b64(b"\0" * 8), "revert_params": [1, 2]},
                 ["revert_params: expected {'shape'", "got an array"], id="revert_params-list"),
    pytest.param(lambda: {"images": b64(b"\0" * 8), "revert_params": "float32"},
                 ["revert_params: expected {'shape'", "got a string"], id="revert_params-string"),
    pytest.param(lambda: {"images": [valid()], "revert_params": {"shape": [1, *INPUT_SHAPE]}},
                 ["images: with revert_params, send one base64 string"], id="revert_params-with-image-list"),
    pytest.param(lambda: {"images": "@@@", "revert_params": {"shape": [1, 1, 1, 1], "dtype": "uint8"}},
                 ["images: not valid base64"], id="ndarray-invalid-base64"),
]


@pytest.mark.parametrize("payload, expected", HOSTILE)
def test_hostile_request_refused_clearly_and_server_keeps_serving(server, payload, expected):
    rss_before = group_rss_kb(server.proc.pid)
    response = requests.post(f"{server.url}/predict/{MODULE}", json=payload(), timeout=120)
    body = response.json()
    assert body["status"] == "101", body
    code = "too_large" if "over the limit" in body["msg"] or "too large to decode" in body["msg"] else "bad_request"
    assert body["error"]["code"] == code and response.status_code == {"too_large": 413, "bad_request": 400}[code]
    for text in expected:
        assert text in body["msg"], body["msg"]
    assert body["msg"].count("images[") == sum(text.startswith("images[") for text in expected), body["msg"]
    assert group_rss_kb(server.proc.pid) - rss_before < MAX_RSS_GROWTH_KB
    assert_still_serving(server)


@pytest.mark.parametrize("field", ["paths", "path", "image_path", "image_paths", "urls"])
def test_server_side_path_fields_refused_and_never_read(server, tmp_path, field):
    """The path is a FIFO: a server that tried to open it would hang until the request timed out."""
    fifo = tmp_path / "never_read.jpg"
    os.mkfifo(fifo)
    for payload in ({field: [str(fifo)]}, {"images": [valid()], field: str(fifo)}):
        response = requests.post(f"{server.url}/predict/{MODULE}", json=payload, timeout=30)
        body = response.json()
        assert body["status"] == "101", body
        assert body["msg"].startswith(f"{field}: server-side paths are never read"), body["msg"]
    assert_still_serving(server)


# Bodies that are not a JSON object: (data, content type, HTTP status, text in the answer).
NOT_AN_OBJECT = [
    pytest.param(b"this is not json", "application/json", 400, "body: not valid JSON", id="body-not-json"),
    pytest.param(b'{"images": ["abc"', "application/json", 400, "body: not valid JSON", id="body-truncated-json"),
    pytest.param(b'{"images": []}', "text/plain", 200, "application/json", id="json-without-content-type"),
    pytest.param(b"[1, 2, 3]", "application/json", 400, "got an array", id="json-array"),
    pytest.param(b'"images"', "application/json", 400, "got a string", id="json-string"),
    pytest.param(b"42", "application/json", 400, "got a number", id="json-number"),
    pytest.param(b"null", "application/json", 400, "got null", id="json-null"),
]


@pytest.mark.parametrize("data, content_type, http_status, text", NOT_AN_OBJECT)
def test_body_not_a_json_object_is_refused_clearly_and_server_keeps_serving(server, data, content_type,
                                                                             http_status, text):
    response = requests.post(f"{server.url}/predict/{MODULE}", data=data, headers={"Content-Type": content_type},
                             timeout=30)
    assert response.status_code == http_status, response.text[:300]
    body = response.json()
    assert text in body["msg"]
    if http_status == 200:  # PaddleHub's "112": post JSON with content type application/json
        assert body["status"] == "112"
    else:
        assert body["status"] == "101" and body["error"]["code"] == "bad_request" and body["error"]["field"] == "body"
    assert_still_serving(server)


def rgba():
    return upright()


def sixteen_bit():
    grey = np.asarray(upright().convert("L")).astype(np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


# (encoded image factory, expected top label or None: just a valid result)
CONVERTED = [
    pytest.param(lambda: encode(upright(), "PNG"), "0", id="png-with-alpha-rgba"),
    pytest.param(lambda: encode(upright().convert("LA"), "PNG"), "0", id="png-grey-with-alpha"),
    pytest.param(sixteen_bit, "0", id="png-16-bit"),
    pytest.param(lambda: encode(upright().convert("L"), "PNG"), "0", id="png-grey"),
    pytest.param(lambda: encode(upright().convert("L"), "JPEG"), "0", id="jpeg-grey"),
    pytest.param(lambda: encode(upright().convert("RGB").convert("CMYK"), "JPEG"), None, id="jpeg-cmyk"),
    pytest.param(mpo, "0", id="jpeg-multi-picture-mpo"),
    pytest.param(lambda: encode(upright().convert("RGB").convert("P"), "PNG"), None, id="png-palette"),
    pytest.param(lambda: encode(upright().convert("RGB"), "WEBP"), None, id="webp"),
    pytest.param(lambda: encode(upright().convert("RGB"), "BMP"), None, id="bmp"),
    pytest.param(lambda: encode(Image.new("RGB", (1, 1), "white"), "PNG"), None, id="png-1x1"),
    pytest.param(lambda: encode(Image.new("L", (1, 1)), "JPEG"), None, id="jpeg-1x1-grey"),
    pytest.param(lambda: encode(Image.new("RGB", (20000, 1)), "PNG"), None, id="png-20000x1"),
    pytest.param(lambda: encode(Image.new("RGB", (1, 20000)), "PNG"), None, id="png-1x20000"),
]


@pytest.mark.parametrize("make, label", CONVERTED)
def test_unusual_valid_images_are_converted_and_classified(server, make, label):
    body = server.post(MODULE, {"images": [b64(make())], "top_k": 2})
    assert body["status"] == "000", body
    [result] = body["results"]["prediction"]
    assert_valid_result(result)
    if label is not None:
        assert result["label_names"][0] == label


def test_data_url_prefix_is_accepted(server):
    body = server.post(MODULE, {"images": ["data:image/png;base64," + valid(), valid()]})
    assert body["status"] == "000", body
    assert [r["label_names"][0] for r in body["results"]["prediction"]] == ["0", "0"]


# ---- api_token -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def token_server(server_factory):
    return server_factory(modules={MODULE: {"api_token": "s3cret", "request_threads": 4, "cpu_threads": 1}})


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
    pytest.param({"Authorization": "Bearer "}, id="empty-token"),
    pytest.param({"Authorization": "Basic czNjcmV0"}, id="basic-auth"),
    pytest.param({"Authorization": "Bearer s3cret-and-more"}, id="token-prefix-match"),
])
def test_unauthorized_requests_are_refused_before_any_work(token_server, headers):
    for payload in ({"images": [valid()]},
                    {"images": ["***", None]},  # bad images: the answer is still "unauthorized"
                    {"images": [valid()] * 9, "paths": ["/etc/passwd"], "top_k": "x"}):
        response = requests.post(f"{token_server.url}/predict/{MODULE}", json=payload, headers=headers, timeout=60)
        body = response.json()
        assert response.status_code == 401 and body["status"] == "101", body
        assert body["error"]["code"] == "unauthorized" and body["msg"].startswith("unauthorized"), body["msg"]
        assert "images" not in body["msg"] and "passwd" not in body["msg"]
    assert_still_serving(token_server, headers={"Authorization": "Bearer s3cret"})


def test_right_token_is_served(token_server):
    assert_still_serving(token_server, headers={"Authorization": "Bearer s3cret"})
    body = token_server.post(MODULE, {"images": ["***"]}, headers={"Authorization": "Bearer s3cret"})
    assert body["status"] == "101" and "images[0]: not valid base64" in body["msg"]


def test_oversized_body_is_refused_before_it_is_read(server):
    """max_request_bytes also caps the HTTP body (base64 + JSON), so the answer is 413 too_large
    before the body is read; the server keeps serving."""
    import requests
    body = b'{"images": ["' + b"A" * 8_000_000 + b'"]}'
    answer = requests.post(f"{server.url}/predict/clas_system", data=body,
                           headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    assert_still_serving(server)
