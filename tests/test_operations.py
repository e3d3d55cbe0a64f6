"""Operations against real servers: typed errors on the wire and in the client, health and
readiness, overload, graceful stop, and settings that do not fit the model failing at start."""
import concurrent.futures
import os
import signal
import time

import numpy as np
import pytest
import requests
from conftest import launch, run_to_exit

from clas_system import (BadRequestError, Client, ModelFailureError, OverloadedError, ServerUnreachable,
                         TooLargeError, UnauthorizedError)
from clas_system.client.encode import ndarray_to_b64
from harness.payloads import b64, image_bytes

MODULE = "clas_system"
TEXT_UP = "textline/textline_orientation_test_0_0.png"


def valid_request(count=1):
    return {"images": [b64(image_bytes(TEXT_UP))] * count}


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(modules={MODULE: {"max_images_per_request": 8, "api_token": None}})


# ---- health and readiness ----------------------------------------------------------------------

def test_health_and_ready_in_one_process(server):
    assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and list(body["modules"]) == [MODULE]
    assert body["modules"][MODULE]["ready"] is True  # beside it: the precision of each model loaded


def test_health_and_ready_in_gunicorn_workers(server_factory):
    workers = server_factory(modules={MODULE: {"cpu_threads": 1}}, use_multiprocess=True, workers=2)
    session = requests.Session()
    answers = [session.get(f"{workers.url}/ready", timeout=10) for _ in range(6)]
    assert all(a.status_code == 200 and a.json()["ready"] for a in answers)
    assert Client(workers.url).classify([image_bytes(TEXT_UP)])[0]["label_names"] == ["0"]


# ---- one error code each, on the wire and as the client's exception -----------------------------

def post(server, payload, headers=None):
    response = requests.post(f"{server.url}/predict/{MODULE}", json=payload, headers=headers or {}, timeout=60)
    return response.status_code, response.json()


def test_bad_request(server):
    status, body = post(server, {"images": [b64(image_bytes(TEXT_UP)), "***"]})
    assert status == 400 and body["status"] == "101"
    assert body["error"] == {"code": "bad_request", "message": body["msg"], "field": "images", "index": 1}
    with pytest.raises(BadRequestError) as err:
        Client(server.url).classify([image_bytes(TEXT_UP), b"not an image"])
    assert (err.value.code, err.value.field, err.value.index, err.value.http_status) == ("bad_request", "images", 1, 400)


def test_too_large(server):
    status, body = post(server, valid_request(9))
    assert status == 413 and body["error"]["code"] == "too_large" and body["error"]["field"] == "images"
    with pytest.raises(TooLargeError):
        Client(server.url, images_per_request=9).classify([image_bytes(TEXT_UP)] * 9)


def test_unauthorized(server_factory):
    guarded = server_factory(modules={MODULE: {"api_token": "s3cret", "cpu_threads": 1}})
    status, body = post(guarded, valid_request(), headers={"Authorization": "Bearer nope"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    with pytest.raises(UnauthorizedError):
        Client(guarded.url, token="nope").classify([image_bytes(TEXT_UP)])
    assert Client(guarded.url, token="s3cret").classify([image_bytes(TEXT_UP)])[0]["label_names"] == ["0"]


def failing_reshape_model(path):
    """A fixture classifier (generated: no real model fails on chosen input) that reshapes its
    input to [-1, k] with k = max(input) rounded down, at least 1: zeros pass, while an input
    holding a 7 cannot be reshaped (3*8*8 = 192 is not a multiple of 7) and the model fails."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Max", ["peak", "one"], ["k_float"]),
        helper.make_node("Cast", ["k_float"], ["k"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["k", "axis0"], ["k1"]),
        helper.make_node("Concat", ["minus_one", "k1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["reshaped"]),
        helper.make_node("ReduceSum", ["reshaped"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "nothing"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])]
    graph = helper.make_graph(nodes, "failing_reshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_model_error(server_factory, tmp_path):
    model = failing_reshape_model(tmp_path / "failing_reshape.onnx")
    fixture = server_factory(modules={MODULE: {
        "preset": None, "model_dir": model, "backend": "onnxruntime", "cpu_threads": 1,
        "preprocess": [{"ResizeImage": {"size": [8, 8]}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}],
        "postprocess": {"Topk": {"topk": 1, "label_list": ["a", "b", "c"]}}}})
    good, info = ndarray_to_b64(np.zeros((1, 3, 8, 8), np.float32))
    bad, _ = ndarray_to_b64(np.full((1, 3, 8, 8), 7.0, np.float32))
    status, body = post(fixture, {"images": good, "revert_params": info})
    assert status == 200 and body["status"] == "000"
    status, body = post(fixture, {"images": bad, "revert_params": info})
    assert status == 500 and body["status"] == "101" and body["error"]["code"] == "model_error", body
    with pytest.raises(ModelFailureError):
        Client(fixture.url).call(MODULE, {"images": bad, "revert_params": info})
    status, body = post(fixture, {"images": good, "revert_params": info})
    assert status == 200 and body["status"] == "000"


# ---- overload ------------------------------------------------------------------------------------

def test_overload_is_refused_quickly_and_the_server_recovers(server_factory):
    """64 clients at once against 2 request threads with 6 waiting places: the excess is told
    `overloaded` at once, nobody waits past max_wait_ms, and the server serves normally after."""
    bound_s = 1.5
    small = server_factory(modules={MODULE: {"request_threads": 2, "max_waiting_requests": 6,
                                             "max_wait_ms": bound_s * 1000, "cpu_threads": 1}})
    body = valid_request(4)

    def one(_):
        started = time.monotonic()
        answer = requests.post(f"{small.url}/predict/{MODULE}", json=body, timeout=60)
        return answer.status_code, answer.json(), time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        outcomes = list(pool.map(one, range(192)))
    served = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 503]
    assert len(served) + len(refused) == len(outcomes)
    assert served and refused
    assert all(o[1]["error"]["code"] == "overloaded" for o in refused)
    assert max(o[2] for o in refused) < bound_s + 1.0
    assert requests.get(f"{small.url}/health", timeout=10).status_code == 200
    assert Client(small.url).classify([image_bytes(TEXT_UP)] * 4)[0]["label_names"] == ["0"]

    def no_retry(_):
        try:
            Client(small.url, retries=0).classify([image_bytes(TEXT_UP)] * 4)
        except OverloadedError as err:
            return err.code
        return "served"

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        codes = list(pool.map(no_retry, range(128)))
    assert "overloaded" in codes and "served" in codes


def test_client_retries_idempotent_calls_until_served(server_factory):
    small = server_factory(modules={MODULE: {"request_threads": 1, "max_waiting_requests": 0, "cpu_threads": 1}})
    client = Client(small.url, retries=20, backoff_s=0.02)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: client.classify([image_bytes(TEXT_UP)]), range(16)))
    assert all(r[0]["label_names"] == ["0"] for r in results)


def test_client_never_leaks_requests_exceptions():
    with pytest.raises(ServerUnreachable):
        Client("http://127.0.0.1:9", retries=1, backoff_s=0.01).classify([image_bytes(TEXT_UP)])


# ---- graceful stop -------------------------------------------------------------------------------

@pytest.mark.parametrize("use_multiprocess", [False, True], ids=["one-process", "gunicorn-workers"])
def test_sigterm_during_load_finishes_in_flight_requests_and_exits_0(hub_home, tmp_path, use_multiprocess):
    from conftest import wait_ready

    server = wait_ready(launch(hub_home, tmp_path, {MODULE: {"graceful_stop_s": 10, "cpu_threads": 1}},
                               use_multiprocess=use_multiprocess))
    body = valid_request(8)
    stop = time.monotonic() + 60

    def keep_posting(_):
        outcomes = []
        session = requests.Session()
        while time.monotonic() < stop:
            try:
                answer = session.post(f"{server.url}/predict/{MODULE}", json=body, timeout=30)
            except requests.RequestException:
                return outcomes  # the server stopped accepting: what was answered must be whole
            outcomes.append((answer.status_code, answer.json()["status"]))
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(keep_posting, i) for i in range(8)]
        time.sleep(3)
        signalled = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        code = server.proc.wait(timeout=30)
        took = time.monotonic() - signalled
        outcomes = [o for f in futures for o in f.result()]
    assert code == 0, server.log()[-2000:]
    assert took < 10 + 5, took
    assert outcomes and all(o == (200, "000") for o in outcomes), set(outcomes)


# ---- settings that do not fit the model ----------------------------------------------------------

@pytest.mark.parametrize("init_args, message", [
    pytest.param({"postprocess": {"Topk": {"topk": 1, "label_list": ["a", "b", "c", "d", "e"]}}},
                 "clas_system.postprocess: 5 labels given, but the model gives 2 classes", id="labels-vs-classes"),
    pytest.param({"preset": "text_image_orientation",
                  "preprocess": [{"ResizeImage": {"size": [192, 48]}}, {"NormalizeImage": {"order": ""}},
                                 {"ToCHWImage": None}]},
                 "clas_system.preprocess: the ops give 3x48x192 tensors, but the model takes 3x224x224",
                 id="preprocess-vs-input"),
])
def test_settings_that_do_not_fit_the_model_stop_start_up(hub_home, tmp_path, init_args, message):
    code, log = run_to_exit(hub_home, tmp_path, {MODULE: init_args})
    assert code != 0 and message in log, log[-3000:]
