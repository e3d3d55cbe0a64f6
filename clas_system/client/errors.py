"""What a Client call raises: one tree, switched on the server's error code, never on its text.

    ClientError
    |- ServerUnreachable      no answer: connection refused or reset, or none within the timeout
    `- ServerError            the server answered with an error
       |- BadRequestError     (and TooLargeError under it), UnauthorizedError, OverloadedError,
       `- ...                 UnavailableError, ModelFailureError: one class per wire code, made
                              from clas_system.errors.WIRE_CODES, the table the server answers from
"""
from ..errors import WIRE_CODES, Problem


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


def _error_classes():
    """One ServerError subclass per wire code, a refining code's under the one it refines."""
    classes = {}
    for entry in WIRE_CODES.values():
        parent = classes[entry.refines] if entry.refines else ServerError
        classes[entry.code] = type(entry.client_class, (parent,), {
            "code": entry.code, "__module__": __name__,
            "__doc__": f"Wire code {entry.code!r} (HTTP {entry.http_status}): {entry.meaning}."})
    return classes


ERROR_CLASSES = _error_classes()
globals().update({cls.__name__: cls for cls in ERROR_CLASSES.values()})
RETRIED = (ServerUnreachable, *(ERROR_CLASSES[entry.code] for entry in WIRE_CODES.values() if entry.retryable))


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
    return isinstance(err, (ServerUnreachable, ERROR_CLASSES["unauthorized"]))


def error_text(err):
    """What to tell a user about a failed call: the server's own message, else the error."""
    return err.message if isinstance(err, ServerError) else str(err)


class ServerUnusable(RuntimeError):
    """The server cannot serve this run at all: going on would fail every request the same way."""
