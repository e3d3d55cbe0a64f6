"""What every served request is checked with, once, before the engine sees it: the token, the
fields it may hold, its images as bytes within the limits, and one set of number checks. Every
refusal is a BadRequest (or TooLarge) naming its field, and its index in a list field.

A request's images are read all at once: an image that is not base64 stays in the list as the
error it is, so the task reports it together with the images that fail to decode.
"""
import base64
import binascii
import hmac
import math

import pybase64

from params.common import MAX_RESULTS_PER_IMAGE

from ..errors import BadRequest, ImageError, TooLarge, Unauthorized

SERVER_PATH_FIELDS = ("paths", "path", "image_path", "image_paths", "urls")
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
                   bool: "a boolean", type(None): "null"}

def json_type(value):
    """What a JSON client sent, in its own words: 'a number', 'null', 'an object'..."""
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


UNAUTHORIZED_MESSAGE = "unauthorized: send the header 'Authorization: Bearer <api_token>'"


def token_matches(authorization, token):
    """Whether an Authorization header carries `Bearer <token>` (compared in constant time)."""
    given = (authorization or "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def check_token(serving, authorization):
    """api_token set: require `Authorization: Bearer <token>`."""
    if serving.api_token is not None and not token_matches(authorization, serving.api_token):
        raise Unauthorized(UNAUTHORIZED_MESSAGE)


def check_fields(request, allowed):
    for name in SERVER_PATH_FIELDS:
        if name in request:
            raise BadRequest.for_field(name, "server-side paths are never read; send the image files as base64 "
                                             "in 'images'")
    unknown = sorted(set(request) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")


def b64decode_text(text, field, index=None):
    """Strict base64 (a `data:...;base64,` prefix and line breaks allowed) -> bytes."""
    if not isinstance(text, str):
        raise ImageError.for_field(field, f"expected a base64 string, got {json_type(text)}", index)
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ImageError.for_field(field, "a data: URL must be base64 encoded (data:image/jpeg;base64,...)", index)
    try:  # SIMD; accepts only plain padded base64, a subset of what the paths below accept
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass  # line breaks, or really not base64: the slower path below tells which
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError.for_field(field, f"not valid base64 ({err})", index) from err


def image_list(request, serving):
    """The 'images' field: a non-empty list within the limits -> per image, its bytes, or the
    ImageError saying why it is not base64 (reported by the task with the images that fail to
    decode, so one answer lists every bad image). An item that is already bytes (a binary
    protocol's, e.g. Open Inference) is taken as it is; JSON never gives bytes."""
    if "images" not in request:
        raise BadRequest.for_field("images", "missing; send {'images': [<base64 of an image file>, ...]}")
    images = request["images"]
    if not isinstance(images, list):
        raise BadRequest.for_field("images", f"expected a list of base64 strings, got {json_type(images)}")
    if not images:
        raise BadRequest.for_field("images", "empty list; send at least one image")
    if len(images) > serving.max_images_per_request:
        raise TooLarge.for_field("images", f"{len(images)} images, over the limit of "
                                           f"{serving.max_images_per_request} per request")
    decoded, total = [], 0
    for i, text in enumerate(images):
        try:
            data = text if isinstance(text, bytes) else b64decode_text(text, "images", i)
        except ImageError as err:
            decoded.append(err)
            continue
        total += len(data)
        if total > serving.max_request_bytes:
            raise TooLarge.for_field("images", f"more than {serving.max_request_bytes} bytes of image data in "
                                               f"one request")
        decoded.append(data)
    return decoded


def whole_number(request, name, default, maximum=MAX_RESULTS_PER_IMAGE):
    """A whole number >= 1 (at most `maximum`), or the default when absent or null."""
    value = request.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest.for_field(name, f"expected a whole number >= 1, got {value!r}")
    if value > maximum:
        raise BadRequest.for_field(name, f"{value} is over the maximum of {maximum}")
    return value


def number(request, name, default, low=-math.inf, high=math.inf):
    """A finite number (within [low, high]), or the default when absent or null."""
    value = request.get(name)
    if value is None:
        return default
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not low <= value <= high):
        bounds = "" if math.isinf(low) else f" from {low} to {high}"
        raise BadRequest.for_field(name, f"expected a number{bounds}, got {value!r}")
    return float(value)


def string_list(request, name, count=None, allow_none=False):
    """A non-empty list of non-empty strings (None items too with allow_none), stripped; with
    `count`, exactly one per image."""
    values = request[name]
    if not isinstance(values, list) or not values:
        raise BadRequest.for_field(name, f"expected a non-empty list of strings, got {values!r}")
    if count is not None and len(values) != count:
        raise BadRequest.for_field(name, f"{len(values)} given for {count} images; send one per image")
    errors = [BadRequest.for_field(name, f"expected a non-empty string, got {value!r}", i)
              for i, value in enumerate(values)
              if not ((allow_none and value is None) or (isinstance(value, str) and value.strip()))]
    if errors:
        raise BadRequest.combined(errors)
    return [value.strip() if isinstance(value, str) else value for value in values]


def id_list(request, name="ids"):
    """A non-empty list of whole numbers (gallery ids)."""
    ids = request[name]
    if not isinstance(ids, list) or not ids:
        raise BadRequest.for_field(name, f"expected a non-empty list of gallery ids, got {ids!r}")
    errors = [BadRequest.for_field(name, f"expected a whole number, got {value!r}", i) for i, value in enumerate(ids)
              if not isinstance(value, int) or isinstance(value, bool)]
    if errors:
        raise BadRequest.combined(errors)
    return ids


