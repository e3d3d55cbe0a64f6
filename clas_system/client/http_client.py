"""The HTTP client: `Client("http://127.0.0.1:8866").classify(["a.jpg", "b.png"])`.

Images may be paths, encoded bytes, numpy arrays (HWC RGB uint8) or PIL images. They are sent
as the encoded files (what the server decodes, never a server-side path), split into requests
of `images_per_request`: as multipart/form-data, the files as they are, or with `binary=False`
(and, from then on, to a server that reads JSON only) as base64 in JSON.

Errors are exceptions of one tree (client.errors), switched on the server's error code, never
on its text: `ServerError` (an answer that is an error; one subclass per code: `BadRequestError`,
`UnauthorizedError`, `TooLargeError`, `OverloadedError`, `UnavailableError`,
`ModelFailureError`) and `ServerUnreachable` (no answer: connection refused, reset, timed out).
Idempotent calls (classify, detect, recognize, gallery search, stats, list, thumbnail and
relabel) are retried with backoff on `ServerUnreachable`, `OverloadedError` and `UnavailableError`; so is gallery
add, which carries a `request_id` (a new UUID per call, or the caller's `request_id=`) that makes a
retried add answer as the first try did, adding nothing. Remove is never retried, since a lost
answer may hide a change that was made.
"""
import json
import time
import uuid

import requests

from .encode import b64encode_image, read_image_bytes
from .errors import RETRIED, ServerError, ServerUnreachable, answer_error

# A server that reads JSON only answers a form post with PaddleHub's "112" (ours before binary
# bodies) or HTTP 415 (PaddleHub's own Flask runner)
JSON_ONLY_STATUS, JSON_ONLY_HTTP_STATUS = "112", 415

# The module each task is served by, unless a call names another.
TASK_MODULES = {"classify": "clas_system", "detect": "det_system", "recognize": "rec_system"}


def as_list(images):
    return list(images) if isinstance(images, (list, tuple)) else [images]


def form_parts(images, fields):
    """requests' `files` for multipart/form-data: each image file a part named "images", each
    field a part holding its JSON."""
    return ([("images", ("image", read_image_bytes(image), "application/octet-stream")) for image in images] +
            [(name, (None, json.dumps(value))) for name, value in fields.items()])


def given(**fields):
    """The request fields a call sets: those not None (the server's settings decide the rest)."""
    return {name: value for name, value in fields.items() if value is not None}


class Client:
    def __init__(self, url="http://127.0.0.1:8866", timeout=60.0, images_per_request=16, token=None,
                 session=None, retries=3, backoff_s=0.2, binary=True):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.images_per_request = images_per_request
        self.token = token
        self.session = session or requests.Session()
        self.retries = retries
        self.backoff_s = backoff_s
        self.binary = binary

    def call(self, module, payload, idempotent=True, files=None):
        """POST a JSON payload (or, with `files`, multipart/form-data) to /predict/<module>;
        returns the `results` of a success. Idempotent calls are retried `retries` times (backoff
        doubling from `backoff_s`) on ServerUnreachable, OverloadedError and UnavailableError."""
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return self._post(module, payload, files)
            except RETRIED:
                if attempt == attempts - 1:
                    raise
                time.sleep(self.backoff_s * 2 ** attempt)

    def _post(self, module, payload, files=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self.session.post(f"{self.url}/predict/{module}", json=payload if files is None else None,
                                         files=files, headers=headers, timeout=self.timeout)
        except requests.RequestException as err:
            raise ServerUnreachable(f"{self.url}: {err}") from err
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "000":
            raise answer_error(response, body)
        return body["results"]

    def _per_image(self, module, images, extra, key):
        results = []
        images = as_list(images)
        for start in range(0, len(images), self.images_per_request):
            results.extend(self._send_images(module, images[start:start + self.images_per_request], extra)[key])
        return results

    def _send_images(self, module, images, extra):
        if self.binary:
            try:
                return self.call(module, None, files=form_parts(images, extra))
            except ServerError as err:
                if err.status != JSON_ONLY_STATUS and err.http_status != JSON_ONLY_HTTP_STATUS:
                    raise
                self.binary = False  # it reads JSON only (an older server, PaddleHub's own modules)
        return self.call(module, {"images": [b64encode_image(image) for image in images], **extra})

    def classify(self, images, top_k=None, module=None):
        """-> one {"class_ids", "scores", "label_names"} per image, in order. top_k: classes per
        image (None: the server's setting)."""
        return self._per_image(module or TASK_MODULES["classify"], images, given(top_k=top_k), "prediction")

    def detect(self, images, threshold=None, max_det_results=None, module=None):
        """-> one list of {"bbox", "score", "label"} per image. threshold: lowest box score;
        max_det_results: boxes per image at most (None: the server's settings)."""
        fields = given(threshold=threshold, max_det_results=max_det_results)
        return self._per_image(module or TASK_MODULES["detect"], images, fields, "prediction")

    def recognize(self, images, score_thres=None, return_k=None, det_threshold=None, max_det_results=None,
                  module=None):
        """-> one list of {"bbox", "rec_docs", "rec_scores"} per image. score_thres: lowest score
        a region is recognised at; return_k: gallery hits searched per region; det_threshold and
        max_det_results: the detector's, as detect's (None: the server's settings)."""
        fields = given(score_thres=score_thres, return_k=return_k, det_threshold=det_threshold,
                       max_det_results=max_det_results)
        return self._per_image(module or TASK_MODULES["recognize"], images, fields, "prediction")

    def gallery(self, action, images=(), labels=(), ids=None, module=None, **fields):
        """Gallery operations on a running rec_system: add / remove / search / stats / save, and
        list / thumbnail / relabel (fields by keyword: offset=, limit=, label=, query=)."""
        payload = {"gallery": action, **fields}
        if action == "add":  # the same id on every try of this call: the server adds once
            payload["request_id"] = fields.get("request_id") or uuid.uuid4().hex
        if images:
            payload["images"] = [b64encode_image(image) for image in as_list(images)]
        if labels:
            payload["labels"] = list(labels)
        if ids is not None:
            payload["ids"] = list(ids)
        return self.call(module or TASK_MODULES["recognize"], payload,
                         idempotent=action in ("add", "search", "stats", "list", "thumbnail", "relabel", "review",
                                               "dismiss"))
