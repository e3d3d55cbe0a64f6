"""The HTTP front of `hub serving start`: one ASGI app, served by uvicorn (httptools, uvloop).

    POST /predict/<module>   PaddleHub's route and envelope; JSON parsed and written with orjson,
                             or image files as they are (binary_body: an image body, multipart),
                             the module called directly from a fixed pool of request threads
    GET  /health             200 while the process serves
    GET  /ready              200 with per-module detail once every module is warmed up; 503 before
    GET  /metrics            Prometheus text (clas_system.serving.metrics); behind metrics_token, else
                             api_token, when set
    anything else            PaddleHub's own Flask app (its index page, pages registered on it)

Requests are admitted through a bounded gate: at most `request_threads` run at once and at most
`max_waiting_requests` wait for a thread; past that, and for a request that waited longer than
`max_wait_ms`, the answer is `overloaded` at once (HTTP 503), so latency cannot grow without
limit. Errors are mapped to the wire in one place (`error_answer`, from clas_system.errors):
PaddleHub's `"status": "101"` and `msg`, plus `"error": {"code", "message", "field", "index"}`
(and `problems` when there are several) and the code's HTTP status. Anything else goes to
PaddleHub's Flask app through wsgi_bridge.
"""
import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import orjson

from .. import hooks
from ..errors import (WIRE_CODES, BadRequest, ClasSystemError, Overloaded, TooLarge, Unauthorized, wire_code,
                      wire_error)
from ..runtime.batching import REQUESTS_IN_FLIGHT
from .binary_body import binary_request, is_binary, media_type
from .fields import UNAUTHORIZED_MESSAGE, json_type, token_matches
from .wsgi_bridge import call_wsgi

log = logging.getLogger("clas_system")

JSON_HEADERS = [(b"content-type", b"application/json")]
DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
OUTDATED_USAGE = ("This usage is out of date, please use 'application/json' as content-type to post to "
                  "/predict/{name}.")

_request_context = threading.local()


class Answer(NamedTuple):
    """What a predict request is answered with, and its outcome for the metrics: "ok" or a wire code."""
    status: int
    body: bytes
    outcome: str
    headers: list = JSON_HEADERS


def current_authorization():
    """The Authorization header of the request this thread is serving, if any (also under
    PaddleHub's own runners, `request_threads: 0`, where Flask holds the request)."""
    given = getattr(_request_context, "authorization", None)
    if given is not None:
        return given
    from flask import has_request_context, request
    return request.headers.get("Authorization") if has_request_context() else None


@dataclass(frozen=True)
class HttpLimits:
    """How much the front accepts at once; from the modules' `serving` settings."""
    request_threads: int
    max_waiting_requests: int
    max_wait_s: float
    max_body_bytes: int


@dataclass(frozen=True)
class ServedModule:
    """One module PaddleHub built: how to call it, warm it up and ask if it is ready."""
    name: str
    call: Callable  # request dict -> results
    warm_up: Optional[Callable]
    readiness: Optional[Callable]  # -> dict of details, with "ready": bool


def own_method(instance, name):
    """instance.name, or None, without PaddleHub's RunModule wrapper, which toggles Paddle's
    process-wide static mode around every method call (costly, and racy across threads)."""
    try:
        return object.__getattribute__(instance, name)
    except AttributeError:
        return None


def served_modules(module_infos):
    """PaddleHub's {name: module_info} -> {name: ServedModule}. A module that defines
    `serve_request(request)` is called with the request dict; any other through its
    `@serving` method with the request as keyword arguments, as PaddleHub does."""
    modules = {}
    for name, info in module_infos.items():
        instance, predict_args = info["module"], dict(info.get("predict_args") or {})
        serve = own_method(instance, "serve_request")
        if serve is not None:
            def call(request, serve=serve, defaults=predict_args):
                return serve({**defaults, **request})
        else:
            def call(request, method=getattr(instance, info["method_name"]), defaults=predict_args):
                return method(**{**defaults, **request})
        modules[name] = ServedModule(name, call, own_method(instance, "warm_up"), own_method(instance, "readiness"))
    return modules


def dumps(value):
    return orjson.dumps(value, option=DUMPS_OPTIONS, default=str)


def envelope(status, msg, results, error=None):
    """PaddleHub's answer shape, plus our typed `error` when something failed."""
    body = {"status": status, "msg": msg, "results": results}
    if error is not None:
        body["error"] = error
    return body


def failure(err):
    """Any exception -> (wire code, its `error` object); a fault of the server (model_error) is
    logged with its traceback."""
    code = wire_code(err)
    if code == "model_error" or not isinstance(err, ClasSystemError):
        log.error("request failed inside the server", exc_info=err)
    return code, wire_error(err)


def error_answer(err):
    """Any exception -> its Answer in PaddleHub's envelope: the one place errors meet this route."""
    code, error = failure(err)
    return Answer(WIRE_CODES[code].http_status, dumps(envelope("101", error["message"], "", error)), code)


def parse_request(body):
    """The JSON object a client posted, or BadRequest saying what is wrong with it."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest.for_field("body", f"not valid JSON ({err})") from err
    if not isinstance(request, dict):
        raise BadRequest.for_field("body", f"expected a JSON object like {{\"images\": [...]}}, got "
                                           f"{json_type(request)}")
    return request


def answer_predict(module, body, content_type, authorization, query=b""):
    """Runs in a request thread: body bytes -> Answer. A JSON object, or image files as they are
    (serving.binary_body), with the module's fields in the query string."""
    binary = is_binary(media_type(content_type)[0])
    if b"json" not in content_type and not binary:  # PaddleHub's refusal, counted as the bad request it is
        return Answer(200, dumps(envelope("112", OUTDATED_USAGE.format(name=module.name), "")), "bad_request")
    try:
        request = binary_request(body, content_type, query) if binary else parse_request(body)
        results = call_module(module, request, authorization)
        return Answer(200, dumps(envelope("000", "", results)), "ok")
    except Exception as err:  # noqa: BLE001 - every failure is answered, typed, in one place
        return error_answer(err)


def call_module(module, request, authorization):
    """module.call(request) with the request's Authorization header where the module checks it."""
    _request_context.authorization = authorization  # "" when the header is absent: Flask is not asked
    try:
        return module.call(request)
    finally:
        _request_context.authorization = None


class AdmissionGate:
    """Counts requests admitted (running or waiting for a thread); refuses past the bound."""

    def __init__(self, limit):
        self.limit = limit
        self.admitted = 0

    def try_enter(self):
        if self.admitted >= self.limit:
            return False
        self.admitted += 1
        return True

    def leave(self):
        self.admitted -= 1


def header(scope, name):
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


async def read_body(receive, limit):
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge.for_field("body", f"more than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def authorized(tokens, authorization):
    """No token set, or the header carries one of them."""
    return not tokens or any(token_matches(authorization, token) for token in tokens)


async def send_answer(send, status, body, headers=JSON_HEADERS):
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ServingApp:
    """The ASGI app. Built before gunicorn forks; its threads and modules are set up per
    process on first use (threads do not survive a fork). `metrics_tokens`: the modules'
    metrics_token (else api_token); when there are any, /metrics needs one of them."""

    def __init__(self, wsgi_fallback, module_infos, limits, metrics_tokens=()):
        self.wsgi_fallback = wsgi_fallback
        self.module_infos = module_infos
        self.limits = limits
        self.metrics_tokens = tuple(metrics_tokens)
        self._pid = None

    def start(self):
        """Threads and modules in this process, every module warmed up (its model loaded):
        called before the process accepts requests, so a model that cannot load stops the
        start, loudly, instead of failing requests later. Idempotent."""
        if self._pid == os.getpid():
            return
        from .metrics import ServingMetrics  # here, not above: see metrics_dir

        self.modules = served_modules(self.module_infos)
        self.metrics = ServingMetrics(list(self.modules), self.module_states)
        self.pool = concurrent.futures.ThreadPoolExecutor(self.limits.request_threads, thread_name_prefix="request")
        self.gate = AdmissionGate(self.limits.request_threads + self.limits.max_waiting_requests)
        self.precisions = {name: self.warmed_up(module) for name, module in self.modules.items()
                           if module.warm_up is not None}
        self.metrics.refresh_every()
        self._pid = os.getpid()

    def warmed_up(self, module):
        """Warms `module` up -> {model: its precision, described} for the models it loaded."""
        chosen = {}

        def record(model, described):
            chosen[model] = described

        hooks.PRECISION_CHOSEN.connect(record)
        try:
            # in a request thread: thread-local state a backend keeps is then made where it is used
            self.pool.submit(module.warm_up).result()
        finally:
            hooks.PRECISION_CHOSEN.disconnect(record)
        return chosen

    def readiness(self):
        detail = {}
        for name, module in self.modules.items():
            state = {"ready": True}
            if self.precisions.get(name):
                state["models"] = self.precisions[name]
            if module.readiness is not None:
                state.update(module.readiness())
            detail[name] = state
        return all(state["ready"] for state in detail.values()), detail

    def module_states(self):
        """{module: its readiness details} (a gallery's items and calibration, for the metrics)."""
        return self.readiness()[1]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.start()
        path, method = scope["path"], scope["method"]
        if path.startswith("/predict/") and method == "POST" and path[len("/predict/"):] in self.modules:
            await self.predict(self.modules[path[len("/predict/"):]], scope, receive, send,
                               answer=functools.partial(answer_predict, query=scope.get("query_string", b"")))
        elif path == "/health" and method in ("GET", "HEAD"):
            await send_answer(send, 200, dumps({"status": "ok"}))
        elif path == "/ready" and method in ("GET", "HEAD"):
            # in a thread of its own: a module asking a hung gallery must not stall the event
            # loop (and /health) until its deadline
            ready, detail = await asyncio.to_thread(self.readiness)
            await send_answer(send, 200 if ready else 503, dumps({"ready": ready, "modules": detail}))
        elif path == "/metrics" and method in ("GET", "HEAD"):
            await self.answer_metrics(scope, send)
        else:
            await self.fallback(scope, receive, send)

    async def predict(self, module, scope, receive, send, answer=answer_predict, refuse=error_answer):
        """One request to a module, admitted, bounded and counted. `answer(module, body,
        content_type, authorization)` and `refuse(err)` give the protocol's Answers (PaddleHub's
        by default; serving.open_inference passes its own)."""
        arrived = time.monotonic()
        answer = await self.admitted_answer(module, scope, receive, arrived, answer, refuse)
        if answer is None:  # the client left before its body arrived
            return
        await send_answer(send, answer.status, answer.body, answer.headers)
        self.metrics.request_answered(module.name, answer.outcome, time.monotonic() - arrived)

    async def admitted_answer(self, module, scope, receive, arrived, answer, refuse):
        if not self.gate.try_enter():
            self.metrics.overload_refusals.labels("queue_full").inc()
            return refuse(Overloaded(
                f"overloaded: {self.gate.limit} requests already running or waiting; retry shortly"))
        try:
            with REQUESTS_IN_FLIGHT, self.metrics.in_flight.track_inprogress():
                declared = header(scope, b"content-length")
                if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
                    raise TooLarge.for_field("body", f"{int(declared)} bytes, over the limit of "
                                                     f"{self.limits.max_body_bytes}")
                body = await read_body(receive, self.limits.max_body_bytes)
                if body is None:
                    return None
                self.metrics.received_bytes.labels(module.name).inc(len(body))
                self.metrics.waiting.inc()
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self.pool, self._run_admitted, module, body, header(scope, b"content-type"),
                    header(scope, b"authorization").decode("latin-1"), arrived, answer, refuse)
        except TooLarge as err:
            return refuse(err)
        finally:
            self.gate.leave()

    def _run_admitted(self, module, body, content_type, authorization, arrived, answer, refuse):
        self.metrics.waiting.dec()
        waited = time.monotonic() - arrived
        if waited > self.limits.max_wait_s:
            self.metrics.overload_refusals.labels("waited_too_long").inc()
            return refuse(Overloaded(f"overloaded: waited {waited * 1000:.0f} ms for a request thread, "
                                     f"over the bound of {self.limits.max_wait_s * 1000:.0f} ms; retry shortly"))
        return answer(module, body, content_type, authorization)

    async def answer_metrics(self, scope, send):
        if not authorized(self.metrics_tokens, header(scope, b"authorization").decode("latin-1")):
            answer = error_answer(Unauthorized(UNAUTHORIZED_MESSAGE))
            await send_answer(send, answer.status, answer.body)
            return
        # the default executor: a scrape does not queue behind requests, nor hold a request thread
        body = await asyncio.get_running_loop().run_in_executor(None, self.metrics.exposition)
        await send_answer(send, 200, body, [(b"content-type", self.metrics.content_type)])

    async def fallback(self, scope, receive, send):
        """Anything not ours goes to PaddleHub's Flask app, run in a request thread."""
        body = await read_body(receive, self.limits.max_body_bytes)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        status, headers, answer = await loop.run_in_executor(self.pool, call_wsgi, self.wsgi_fallback, scope, body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
