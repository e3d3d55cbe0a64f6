"""One error tree for everything a served request can fail with, mapped once to the wire.

Every error a client can act on is a `ServingError` whose `code` is one of CODES. The HTTP
layer turns any exception into PaddleHub's envelope (`"status": "101"`, `"msg"`) plus
`"error": {"code", "message", "field", "index"}` and the matching HTTP status, in one place:
`wire_error`. Clients switch on `code`, never on the English text.
"""
import re

HTTP_STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "too_large": 413,
    "overloaded": 503,
    "unavailable": 503,
    "model_error": 500,
}
CODES = tuple(HTTP_STATUS)

# "images[3]: not valid base64" -> field "images", index 3; "top_k: ..." -> field "top_k"
_WHERE = re.compile(r"^([A-Za-z_][\w.]*)(?:\[(\d+)\])?:")


class ServingError(Exception):
    """A request failed in a way its client can act on; `code` says how."""

    code = "bad_request"


class BadRequest(ServingError, ValueError):
    """The request is malformed: a missing or wrong field, an image that cannot be used."""

    code = "bad_request"


class Unauthorized(ServingError):
    code = "unauthorized"


class TooLarge(BadRequest):
    """Over a size limit: images per request, bytes per request, pixels per image."""

    code = "too_large"


class Overloaded(ServingError):
    """More requests are waiting than the server accepts; retry after a short wait."""

    code = "overloaded"


class Unavailable(ServingError):
    """The module cannot serve right now (still starting, stopping, or its gallery is closed)."""

    code = "unavailable"


class ModelFailure(ServingError):
    """The model failed on input that passed every check: a server-side fault."""

    code = "model_error"


def error_code(err):
    """The wire code of any exception: its own for ServingErrors; model_error for the rest,
    which are faults of the server, not of the request."""
    return err.code if isinstance(err, ServingError) else "model_error"


def wire_error(err):
    """Any exception -> the `error` object of an answer: {"code", "message", "field", "index"}."""
    message = str(err) or type(err).__name__
    where = _WHERE.match(message)
    return {
        "code": error_code(err),
        "message": message,
        "field": where.group(1) if where else None,
        "index": int(where.group(2)) if where and where.group(2) is not None else None,
    }
