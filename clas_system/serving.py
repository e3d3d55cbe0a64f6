"""What every served request goes through: auth, field checks, image decoding, limits.

A request is refused as a whole when any of its images is bad: the error lists every bad image
by index, and no image of that request reaches the model.
"""
import functools
import hmac
import time

import numpy as np

from .codec import ImageError, b64_to_ndarray, b64decode_text, json_type
from .errors import BadRequest, TooLarge, Unauthorized
from .preprocess import PreprocessError


class RequestError(BadRequest):
    """The request is malformed; the message says which field and why."""


SERVER_PATH_FIELDS = ("paths", "path", "image_path", "image_paths", "urls")


def check_token(serving, authorization):
    """api_token set: require `Authorization: Bearer <token>` (compared in constant time)."""
    if serving.api_token is None:
        return
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), serving.api_token.encode()):
        raise Unauthorized("unauthorized: send the header 'Authorization: Bearer <api_token>'")


def check_fields(request, allowed):
    for name in SERVER_PATH_FIELDS:
        if name in request:
            raise RequestError(f"{name}: server-side paths are never read; send the image files as base64 in 'images'")
    unknown = sorted(set(request) - set(allowed))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")


def image_list(request, serving):
    """The 'images' field: a non-empty list within the limits -> per image, its bytes, or the
    ImageError saying why it is not base64; prepare_all reports those together with the images
    that fail to decode, so one answer lists every bad image."""
    if "images" not in request:
        raise RequestError("images: missing; send {'images': [<base64 of an image file>, ...]}")
    images = request["images"]
    if not isinstance(images, list):
        raise RequestError(f"images: expected a list of base64 strings, got {json_type(images)}")
    if not images:
        raise RequestError("images: empty list; send at least one image")
    if len(images) > serving.max_images_per_request:
        raise TooLarge(f"images: {len(images)} images, over the limit of {serving.max_images_per_request} per request")
    decoded, total = [], 0
    for i, text in enumerate(images):
        try:
            data = b64decode_text(text, f"images[{i}]")
        except ImageError as err:
            decoded.append(err)
            continue
        total += len(data)
        if total > serving.max_request_bytes:
            raise TooLarge(f"images: more than {serving.max_request_bytes} bytes of image data in one request")
        decoded.append(data)
    return decoded


def raise_if_any(errors):
    """One error for all the request's problems (messages or exceptions); it is too_large
    when every problem is a size limit, else bad_request."""
    if errors:
        cls = TooLarge if all(isinstance(e, TooLarge) for e in errors) else RequestError
        raise cls("; ".join(map(str, errors)))


def positive_int(request, name, default, maximum=None):
    value = request.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(f"{name}: expected a whole number >= 1, got {value!r}")
    if maximum is not None and value > maximum:
        raise RequestError(f"{name}: {value} is over the maximum of {maximum}")
    return value


def prepare_all(images, to_tensor):
    """Decode + preprocess every image, collecting every failure by index (an item that is
    already an ImageError, from image_list, counts as one)."""
    tensors, errors = [], []
    for i, data in enumerate(images):
        if isinstance(data, ImageError):
            errors.append(data)
            continue
        try:
            tensors.append(to_tensor(data, f"images[{i}]"))
        except ImageError as err:
            errors.append(err)
        except PreprocessError as err:
            errors.append(f"images[{i}]: {err}")
    raise_if_any(errors)
    return tensors


def classify_request(classifier, batcher, request, authorization=None):
    """A clas_system request -> {"prediction": [...], "elapse": seconds}.

    Two protocols: {"images": [base64 image files], "top_k"} and PaddleClas's reference
    {"images": <base64 of a float32 NCHW batch>, "revert_params": {"shape", "dtype"}, "top_k"}.
    """
    started = time.perf_counter()
    serving = classifier.settings.serving
    check_token(serving, authorization)
    check_fields(request, ("images", "top_k", "revert_params"))
    top_k = positive_int(request, "top_k", None, maximum=1000)
    reference = "revert_params" in request or isinstance(request.get("images"), str)
    if reference:
        probs = batcher(reference_batch(classifier, request, serving))
    else:
        images = image_list(request, serving)
        probs = batcher(functools.partial(prepare_all, images, classifier.image_to_tensor))
    prediction = classifier.postprocess(np.stack(probs), top_k)
    if reference:
        for item in prediction:  # PaddleClas's own test client reads this spelling
            item["clas_ids"] = item["class_ids"]
    return {"prediction": prediction, "elapse": time.perf_counter() - started}


def reference_batch(classifier, request, serving):
    """PaddleClas reference protocol: one base64 ndarray batch, already preprocessed."""
    if not isinstance(request.get("images"), str):
        raise RequestError("images: with revert_params, send one base64 string of the whole float32 batch")
    if "revert_params" not in request:
        raise RequestError("images: expected a list of base64 image files; a single string is PaddleClas's "
                           "ndarray protocol and needs revert_params {'shape': [...], 'dtype': 'float32'}")
    try:
        batch = b64_to_ndarray(request["images"], request.get("revert_params"),
                               max_bytes=serving.max_request_bytes)
    except ImageError as err:
        raise_if_any([err])
    expected = classifier.input_shape
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        raise RequestError(f"revert_params.shape: {list(batch.shape)} does not fit this model; "
                           f"expected [N, {', '.join(map(str, expected))}]")
    if batch.shape[0] > serving.max_images_per_request:
        raise TooLarge(f"images: {batch.shape[0]} images, over the limit of {serving.max_images_per_request} per request")
    if batch.dtype != "float32":
        batch = batch.astype("float32")
    if not np.isfinite(batch).all():
        raise RequestError("images: the batch holds NaN or infinite values")
    return list(batch)
