"""The Open Inference Protocol (KServe v2 REST, what Triton, KServe, Seldon/MLServer and OpenVINO
Model Server speak) beside PaddleHub's route, for every module:

    GET  /v2                                server metadata (extensions: binary_tensor_data)
    GET  /v2/health/live, /v2/health/ready  200, or 503 until every module is ready
    GET  /v2/models/<module>[/versions/1]   model metadata: inputs, outputs, parameters
    GET  /v2/models/<module>/ready          200, or 503 while the module is not ready
    POST /v2/models/<module>/infer          one request: images in, named output tensors out

An infer request has one input: `images` (BYTES [N], each an encoded image file) or `pixels`
(UINT8 [N, H, W, 3], RGB). Its parameters are the module's request fields (top_k; threshold,
max_det_results; return_k, score_thres, det_threshold, max_det_results). The module is called
with the same request dict the PaddleHub route builds, through the same admission gate, limits,
token check and metrics (ServingApp.predict); errors answer `{"error": message}` with the same
HTTP status as there. Tensors on the wire, with the binary-data extension: inference_tensors.

`OpenInferenceFront(app)` wraps the ServingApp (hubserving mounts it) and hands every other path on.
"""
import asyncio
import functools
from typing import Callable, NamedTuple, Tuple

import cv2
import numpy as np

from .. import __version__
from ..errors import WIRE_CODES, BadRequest
from .http_app import Answer, call_module, dumps, failure, header, send_answer
from .inference_tensors import Tensor, read_request, requested_binary, write_response

SERVER_NAME = "paddleclas-serving"
MODEL_VERSION = "1"
IMAGE_INPUTS = ({"name": "images", "datatype": "BYTES", "shape": [-1]},
                {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]})
# what the protocol itself puts in a request's parameters; not the module's
PROTOCOL_PARAMETERS = ("binary_data_output", "priority", "timeout", "sequence_id", "sequence_start", "sequence_end")


class Layout(NamedTuple):
    """How a module's results are named tensors: the request fields it takes as parameters, its
    outputs (name, datatype, shape) and results -> [Tensor]."""
    parameters: Tuple[str, ...]
    outputs: Tuple[Tuple[str, str, Tuple[int, ...]], ...]
    to_outputs: Callable


def rows(name, datatype, values, fill, tail=()):
    """Rows of unequal length -> one tensor [N, longest, *tail], short rows padded with `fill`."""
    width = max((len(row) for row in values), default=0)
    padded = [list(row) + [fill] * (width - len(row)) for row in values]
    shape = [len(values), width, *tail]
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, [str(item).encode() for row in padded for item in row])
    return Tensor(name, datatype, shape, np.asarray(padded, dtype=np.float32 if datatype == "FP32" else np.int64)
                  .reshape(shape))


def counts(regions):
    return Tensor("counts", "INT64", [len(regions)], np.asarray([len(r) for r in regions], np.int64))


def classify_outputs(results):
    prediction = results["prediction"]
    return [rows("class_ids", "INT64", [p["class_ids"] for p in prediction], 0),
            rows("scores", "FP32", [p["scores"] for p in prediction], 0.0),
            rows("label_names", "BYTES", [p["label_names"] for p in prediction], "")]


def detect_outputs(results):
    boxes = results["prediction"]
    return [rows("boxes", "FP32", [[b["bbox"] for b in image] for image in boxes], [0.0] * 4, (4,)),
            rows("scores", "FP32", [[b["score"] for b in image] for image in boxes], 0.0),
            rows("labels", "BYTES", [[b["label"] for b in image] for image in boxes], ""),
            counts(boxes)]


def recognize_outputs(results):
    regions = results["prediction"]
    return [rows("boxes", "FP32", [[r["bbox"] for r in image] for image in regions], [0.0] * 4, (4,)),
            rows("labels", "BYTES", [[r["rec_docs"] for r in image] for image in regions], ""),
            rows("scores", "FP32", [[r["rec_scores"] for r in image] for image in regions], 0.0),
            rows("ids", "INT64", [[r["rec_id"] for r in image] for image in regions], -1),
            counts(regions)]


PER_IMAGE = (-1, -1)
BOXES = (-1, -1, 4)
LAYOUTS = {
    "clas_system": Layout(("top_k",), (("class_ids", "INT64", PER_IMAGE), ("scores", "FP32", PER_IMAGE),
                                       ("label_names", "BYTES", PER_IMAGE)), classify_outputs),
    "det_system": Layout(("threshold", "max_det_results"),
                         (("boxes", "FP32", BOXES), ("scores", "FP32", PER_IMAGE), ("labels", "BYTES", PER_IMAGE),
                          ("counts", "INT64", (-1,))), detect_outputs),
    "rec_system": Layout(("return_k", "score_thres", "det_threshold", "max_det_results"),
                         (("boxes", "FP32", BOXES), ("labels", "BYTES", PER_IMAGE), ("scores", "FP32", PER_IMAGE),
                          ("ids", "INT64", PER_IMAGE), ("counts", "INT64", (-1,))), recognize_outputs),
}


def model_metadata(name, layout):
    return {"name": name, "versions": [MODEL_VERSION], "platform": SERVER_NAME, "inputs": list(IMAGE_INPUTS),
            "outputs": [{"name": n, "datatype": d, "shape": list(s)} for n, d, s in layout.outputs],
            "parameters": {"request": list(layout.parameters)}}


def pixels_to_files(tensor):
    """UINT8 [N, H, W, 3] RGB -> N lossless BMP files (decoded, checked and limited like any image)."""
    if tensor.data.ndim != 4 or tensor.shape[3] != 3 or 0 in tensor.shape[1:3]:
        raise BadRequest.for_field("inputs[0].shape", f"pixels must be [N, H, W, 3] (RGB), got {tensor.shape}")
    return [cv2.imencode(".bmp", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes() for image in tensor.data]


def image_files(inputs):
    """The request's one input -> encoded image files."""
    if len(inputs) != 1:
        raise BadRequest.for_field("inputs", f"{len(inputs)} inputs given; send one: 'images' or 'pixels'")
    tensor = inputs[0]
    if tensor.name == "images" and tensor.datatype == "BYTES":
        return tensor.data
    if tensor.name == "pixels" and tensor.datatype == "UINT8":
        return pixels_to_files(tensor)
    raise BadRequest.for_field("inputs[0]", f"{tensor.name!r} {tensor.datatype} is not an input; send 'images' "
                                            f"(BYTES, encoded image files) or 'pixels' (UINT8 [N, H, W, 3])")


def module_parameters(header, layout, module_name):
    """The request's parameters that are the module's fields (protocol ones left out)."""
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest.for_field("parameters", "expected an object")
    fields = {}
    for name, value in parameters.items():
        if name in PROTOCOL_PARAMETERS:
            continue
        if name not in layout.parameters:
            raise BadRequest.for_field(f"parameters.{name}", f"not a parameter of {module_name}; it takes "
                                                             f"{', '.join(layout.parameters)}")
        fields[name] = value
    return fields


def refusal(err):
    """Any exception -> the protocol's error answer: {"error": message}, the wire code's HTTP status."""
    code, error = failure(err)
    return Answer(WIRE_CODES[code].http_status, dumps({"error": error["message"]}), code)


def answer_infer(layout, header_length, module, body, _content_type, authorization):
    """Runs in a request thread, as ServingApp.predict's `answer`: an infer body -> Answer."""
    try:
        request = read_request(body, header_length)
        fields = module_parameters(request.header, layout, module.name)
        names, binary = requested_binary(request.header, [name for name, _, _ in layout.outputs])
        results = call_module(module, {"images": image_files(request.inputs), **fields}, authorization)
        made = {tensor.name: tensor for tensor in layout.to_outputs(results)}
        described = {"model_name": module.name, "model_version": MODEL_VERSION}
        if isinstance(request.header.get("id"), str):
            described["id"] = request.header["id"]
        answer, json_length = write_response(described, [made[name] for name in names], binary)
    except Exception as err:  # noqa: BLE001 - every failure is answered, typed, in one place
        return refusal(err)
    if json_length is None:
        return Answer(200, answer, "ok")
    return Answer(200, answer, "ok", [(b"content-type", b"application/octet-stream"),
                                      (b"inference-header-content-length", str(json_length).encode())])


def model_route(path):
    """/v2/models/<name>[/versions/<v>][/<action>] -> (name, version or None, action: "", "ready", "infer")."""
    parts = path[len("/v2/models/"):].split("/")
    name, rest = parts[0], parts[1:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    action = rest[0] if len(rest) == 1 else ("" if not rest else None)
    return name, version, action


async def send_error(send, status, message):
    await send_answer(send, status, dumps({"error": message}))


class OpenInferenceFront:
    """An ASGI app: /v2 routes here, everything else to the wrapped ServingApp."""

    def __init__(self, app):
        self.app = app

    def start(self):
        self.app.start()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v2" or path.startswith("/v2/")):
            await self.app(scope, receive, send)
            return
        self.app.start()
        await self.route(scope, receive, send, path.rstrip("/"), scope["method"])

    async def route(self, scope, receive, send, path, method):
        if path.startswith("/v2/models/"):
            await self.model(scope, receive, send, *model_route(path), method)
        elif method not in ("GET", "HEAD"):
            await send_error(send, 405, f"{method} {path}: use GET")
        elif path == "/v2":
            await send_answer(send, 200, dumps({"name": SERVER_NAME, "version": __version__,
                                                "extensions": ["binary_tensor_data"]}))
        elif path == "/v2/health/live":
            await send_answer(send, 200, dumps({"live": True}))
        elif path == "/v2/health/ready":
            ready, _ = await asyncio.to_thread(self.app.readiness)
            await send_answer(send, 200 if ready else 503, dumps({"ready": ready}))
        else:
            await send_error(send, 404, f"no Open Inference route {path}")

    async def model(self, scope, receive, send, name, version, action, method):
        served = self.app.modules.get(name)
        reading = method in ("GET", "HEAD")
        if served is None or name not in LAYOUTS:
            known = ", ".join(n for n in self.app.modules if n in LAYOUTS)
            await send_error(send, 404, f"unknown model {name!r}; this server serves {known}")
        elif version not in (None, MODEL_VERSION):
            await send_error(send, 404, f"{name} has version {MODEL_VERSION} only, not {version!r}")
        elif action not in ("", "ready", "infer"):
            await send_error(send, 404, f"no Open Inference route {scope['path']}")
        elif (action == "infer") != (method == "POST") or (action != "infer" and not reading):
            await send_error(send, 405, f"{method} {scope['path']}: use {'POST' if action == 'infer' else 'GET'}")
        elif action == "infer":
            await self.infer(served, scope, receive, send)
        elif action == "ready":
            _, detail = await asyncio.to_thread(self.app.readiness)
            ready = detail[name]["ready"]
            await send_answer(send, 200 if ready else 503, dumps({"name": name, "ready": ready}))
        else:
            await send_answer(send, 200, dumps(model_metadata(name, LAYOUTS[name])))

    async def infer(self, module, scope, receive, send):
        encoding = header(scope, b"content-encoding").decode("latin-1")
        if encoding not in ("", "identity"):
            refused = refusal(BadRequest.for_field("Content-Encoding", f"{encoding!r} is not supported; send "
                                                                       f"the body uncompressed"))
            await send_answer(send, refused.status, refused.body)
            return
        answer = functools.partial(answer_infer, LAYOUTS[module.name],
                                   header(scope, b"inference-header-content-length").decode("latin-1"))
        await self.app.predict(module, scope, receive, send, answer=answer, refuse=refusal)
