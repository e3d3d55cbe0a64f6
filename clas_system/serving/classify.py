"""clas_system's requests, parsed and bounded here, then run on the classifier.

Two protocols: {"images": [base64 image files], "top_k"} and PaddleClas's reference
{"images": <base64 of a float32 NCHW batch>, "revert_params": {"shape", "dtype"}, "top_k"}.
"""
import functools
import math
import time

import numpy as np

from ..errors import BadRequest, ImageError, ImageTooLarge, TooLarge
from ..tasks.per_image import each_image
from .fields import b64decode_text, check_fields, check_token, image_list, json_type, whole_number

NDARRAY_DTYPES = ("float32", "float16", "uint8")
CLASSIFY_FIELDS = ("images", "top_k", "revert_params")


def classify_request(classifier, batcher, request, authorization=None):
    """A clas_system request -> {"prediction": [...], "elapse": seconds}."""
    started = time.perf_counter()
    serving = classifier.settings.serving
    check_token(serving, authorization)
    check_fields(request, CLASSIFY_FIELDS)
    top_k = whole_number(request, "top_k", None)
    reference = "revert_params" in request or isinstance(request.get("images"), str)
    if reference:
        probs = batcher(ndarray_batch(request, classifier.input_shape, serving))
    else:
        images = image_list(request, serving)
        probs = batcher(functools.partial(each_image, images, classifier.image_to_tensor))
    prediction = classifier.postprocess(np.stack(probs), top_k)
    if reference:
        for item in prediction:  # PaddleClas's own test client reads this spelling
            item["clas_ids"] = item["class_ids"]
    return {"prediction": prediction, "elapse": time.perf_counter() - started}


def ndarray_batch(request, input_shape, serving):
    """PaddleClas's reference protocol: one base64 ndarray batch, already preprocessed -> its
    float32 tensors, checked against the model's input (C, H, W) and the limits."""
    if not isinstance(request.get("images"), str):
        raise BadRequest.for_field("images", "with revert_params, send one base64 string of the whole float32 batch")
    if "revert_params" not in request:
        raise BadRequest.for_field("images", "expected a list of base64 image files; a single string is "
                                             "PaddleClas's ndarray protocol and needs revert_params "
                                             "{'shape': [...], 'dtype': 'float32'}")
    batch = b64_to_ndarray(request["images"], request["revert_params"], max_bytes=serving.max_request_bytes)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != input_shape:
        raise BadRequest.for_field("revert_params.shape", f"{list(batch.shape)} does not fit this model; "
                                                          f"expected [N, {', '.join(map(str, input_shape))}]")
    if batch.shape[0] > serving.max_images_per_request:
        raise TooLarge.for_field("images", f"{batch.shape[0]} images, over the limit of "
                                           f"{serving.max_images_per_request} per request")
    if batch.dtype != "float32":
        batch = batch.astype("float32")
    if not np.isfinite(batch).all():
        raise BadRequest.for_field("images", "the batch holds NaN or infinite values")
    return list(batch)


def b64_to_ndarray(text, revert_params, max_bytes=None):
    """The inverse of client.encode.ndarray_to_b64, checking shape and dtype against the bytes received."""
    if not isinstance(revert_params, dict):
        raise ImageError.for_field("revert_params", f"expected {{'shape': [...], 'dtype': 'float32'}}, "
                                                    f"got {json_type(revert_params)}")
    shape, dtype = revert_params.get("shape"), revert_params.get("dtype", "float32")
    if dtype not in NDARRAY_DTYPES:
        raise ImageError.for_field("revert_params.dtype", f"{dtype!r} is not supported; use one of "
                                                          f"{', '.join(NDARRAY_DTYPES)}")
    if (not isinstance(shape, (list, tuple)) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ImageError.for_field("revert_params.shape", f"expected a list of positive ints, got {shape!r}")
    expected = math.prod(shape) * np.dtype(dtype).itemsize  # exact: np.prod wraps around at 2**63
    if max_bytes is not None and expected > max_bytes:
        raise ImageTooLarge.for_field("revert_params.shape", f"{shape} is {expected} bytes, over the limit of "
                                                             f"{max_bytes}")
    raw = b64decode_text(text, "images")
    if len(raw) != expected:
        raise ImageError.for_field("images", f"{len(raw)} bytes do not match revert_params shape {shape} "
                                             f"of {dtype} ({expected} bytes)")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
