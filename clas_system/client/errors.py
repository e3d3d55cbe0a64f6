"""What a Client call raises: one tree, switched on the server's error code, never on its text.

    ClientError
    |- ServerUnreachable      no answer: connection refused or reset, or none within the timeout
    `- ServerError            the server answered with an error
       |- BadRequestError     bad_request (HTTP 400)
       |  `- TooLargeError    too_large (413)
       |- UnauthorizedError   unauthorized (401)
       |- OverloadedError     overloaded (503, retried)
       |- UnavailableError    unavailable (503, retried)
       `- ModelFailureError   model_error (500)

One class per code of clas_system.errors.WIRE_CODES, the table the server answers from; a test
keeps the two the same (names, parents, retried or not).
"""
from ..errors import Problem


class ClientError(Exception):
    """Anything a Client call raises."""


class ServerUnreachable(ClientError):
    """No answer from the server: connection refused or reset, or no answer within the timeout."""


class ServerError(ClientError):
    """The server answered with an error. `status` is PaddleHub's code ("101": the module
    refused the request), `code` ours (one of WIRE_CODES), `message` the server's explanation,
    `field` / `index` where the (first) problem is (e.g. "images", 3), `problems` every problem
    (each with message, field, index), `http_status` the HTTP status."""

    code = None

    def __init__(self, status, message, code=None, field=None, index=None, http_status=None, problems=None):
        super().__init__(f"server error {code or status}: {message}")
        self.status = status
        self.message = message
        self.code = code or self.code
        self.field = field
        self.index = index
        self.http_status = http_status
        self.problems = problems or [Problem(message, field, index)]


class BadRequestError(ServerError):
    """bad_request (HTTP 400): the request is malformed: a missing or wrong field, an image that
    cannot be used."""

    code = "bad_request"


class TooLargeError(BadRequestError):
    """too_large (HTTP 413): over a size limit: images per request, bytes per request, pixels
    per image."""

    code = "too_large"


class UnauthorizedError(ServerError):
    """unauthorized (HTTP 401): api_token is set and the request did not carry it."""

    code = "unauthorized"


class OverloadedError(ServerError):
    """overloaded (HTTP 503): more requests are waiting than the server accepts; retried."""

    code = "overloaded"


class UnavailableError(ServerError):
    """unavailable (HTTP 503): the module cannot serve right now (its gallery does not answer, or
    it is stopping); retried."""

    code = "unavailable"


class ModelFailureError(ServerError):
    """model_error (HTTP 500): a fault of the server: the model or the gallery failed on a
    request that passed every check."""

    code = "model_error"


# The class each wire code raises; tests/test_errors.py checks it against WIRE_CODES.
ERROR_CLASSES = {cls.code: cls for cls in (BadRequestError, TooLargeError, UnauthorizedError, OverloadedError,
                                           UnavailableError, ModelFailureError)}
# What an idempotent call is sent again after (WIRE_CODES' retryable codes, and no answer at all).
RETRIED = (ServerUnreachable, OverloadedError, UnavailableError)


def answer_error(response, body):
    """The ServerError an error answer stands for."""
    if not isinstance(body, dict):
        return ServerError(str(response.status_code), response.text[:500], http_status=response.status_code)
    error = body.get("error") or {}
    problems = [Problem(p.get("message"), p.get("field"), p.get("index")) for p in error.get("problems") or []]
    cls = ERROR_CLASSES.get(error.get("code"), ServerError)
    return cls(body.get("status", str(response.status_code)), body.get("msg", response.text[:500]),
               code=error.get("code"), field=error.get("field"), index=error.get("index"),
               http_status=response.status_code, problems=problems or None)


def is_fatal(err):
    """Errors that would hit every request alike: no server (after the client's retries), or no
    access to it."""
    return isinstance(err, (ServerUnreachable, UnauthorizedError))


def error_text(err):
    """What to tell a user about a failed call: the server's own message, else the error."""
    return err.message if isinstance(err, ServerError) else str(err)


class ServerUnusable(RuntimeError):
    """The server cannot serve this run at all: going on would fail every request the same way."""
