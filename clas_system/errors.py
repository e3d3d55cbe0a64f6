"""One error tree for everything the engine and the gallery raise, and one table of wire codes.

Every error a caller can act on is a `ClasSystemError`; its `code` is one of WIRE_CODES, which
gives the HTTP status and the name of the exception the client raises for it (written out in
clas_system.client.errors; a test checks them against this table). Each error carries its
problems, each with the `field` and `index` it is about (`images`, 3), as attributes: the
message is made from them, never read back. The HTTP front writes `wire_error(err)` into the
answer; any exception outside the tree is a fault of the server: `model_error`.

    ClasSystemError
    |- BadRequest                 bad_request   the request (or a call's arguments) cannot be used
    |  |- TooLarge                too_large     over a size limit
    |  |- ImageError              bad_request   one image cannot be decoded or used
    |  |  `- ImageTooLarge        too_large
    |  |- PreprocessError         bad_request   the image does not fit the preprocessing
    |  `- GalleryInputError       bad_request   (also a GalleryError) labels, docs, ids, k, vectors
    |- Unauthorized               unauthorized
    |- Overloaded                 overloaded    retry after a short wait
    |- Unavailable                unavailable   retry: starting, stopping, gallery not answering
    |  `- GalleryUnavailable      unavailable   (also a GalleryError)
    |- ModelError                 model_error   model files missing or unfit, or a model failed
    |  `- DerivationError         model_error   a built-in model could not be derived
    |- GalleryError               model_error   a gallery cannot be opened, read or written
    `- ChildFailed                model_error   a start-up child process died
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional


@dataclass(frozen=True)
class WireCode:
    code: str
    http_status: int
    client_class: str  # the exception clas_system.client raises for this code
    refines: Optional[str]  # the code whose client class this one's subclasses
    retryable: bool  # an idempotent call may be sent again after a short wait
    meaning: str


WIRE_CODES = {entry.code: entry for entry in (
    WireCode("bad_request", 400, "BadRequestError", None, False,
             "the request is malformed: a missing or wrong field, an image that cannot be used"),
    WireCode("too_large", 413, "TooLargeError", "bad_request", False,
             "over a size limit: images per request, bytes per request, pixels per image"),
    WireCode("unauthorized", 401, "UnauthorizedError", None, False,
             "api_token is set and the request did not carry it"),
    WireCode("overloaded", 503, "OverloadedError", None, True,
             "more requests are waiting than the server accepts"),
    WireCode("unavailable", 503, "UnavailableError", None, True,
             "the module cannot serve right now (its gallery does not answer, or it is stopping)"),
    WireCode("model_error", 500, "ModelFailureError", None, False,
             "a fault of the server: the model or the gallery failed on a request that passed every check"),
)}


class Problem(NamedTuple):
    """One thing wrong: the sentence saying what (naming where), and where as data: `field`, and
    `index` within a list field."""
    message: str
    field: Optional[str] = None
    index: Optional[int] = None


def place(field, index=None):
    """How a message names a place: `images`, `images[3]`."""
    return field if index is None else f"{field}[{index}]"


def short(text, limit=80):
    """Text cut to `limit` characters for a message (a long repr, a server's answer)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def prefixed(where, message):
    """`where: message`, or the message alone when there is no where."""
    return message if where is None else f"{where}: {message}"


class ClasSystemError(Exception):
    """What the engine and the gallery raise. `problems` says what is wrong and where; `field`
    and `index` are the first problem's."""

    code = "model_error"

    def __init__(self, message, field=None, index=None, problems=None):
        self.problems = tuple(problems) if problems else (Problem(message, field, index),)
        super().__init__("; ".join(problem.message for problem in self.problems))

    @classmethod
    def for_field(cls, field, message, index=None):
        """An error about one field (one item of a list field): `field[index]: message`."""
        return cls(prefixed(place(field, index), message), field, index)

    @property
    def field(self):
        return self.problems[0].field

    @property
    def index(self):
        return self.problems[0].index

    def at(self, field, index=None):
        """The same error located at `field` (`index`), for a check that did not know where its
        input came from (one image of a request, one file of a list); problems already located
        stay as they are."""
        return type(self)(None, problems=[
            problem if problem.field is not None else
            Problem(prefixed(place(field, index), problem.message), field, index)
            for problem in self.problems])


class BadRequest(ClasSystemError, ValueError):
    code = "bad_request"

    @classmethod
    def combined(cls, errors):
        """One error for several (each a ClasSystemError): a single one as it is; else
        too_large when every one is a size limit, else bad_request, every problem kept in order."""
        if len(errors) == 1:
            return errors[0]
        kind = TooLarge if all(isinstance(err, TooLarge) for err in errors) else BadRequest
        return kind(None, problems=[problem for err in errors for problem in err.problems])


class TooLarge(BadRequest):
    code = "too_large"


class ImageError(BadRequest):
    """One input image cannot be used; the message says why."""
    code = "bad_request"


class ImageTooLarge(ImageError, TooLarge):
    """One input image is over a size limit (pixels, or bytes of an ndarray batch)."""
    code = "too_large"


class PreprocessError(BadRequest):
    """The image does not fit the preprocessing (for example smaller than the crop)."""
    code = "bad_request"


class Unauthorized(ClasSystemError):
    code = "unauthorized"


class Overloaded(ClasSystemError):
    code = "overloaded"


class Unavailable(ClasSystemError):
    code = "unavailable"


class ModelError(ClasSystemError, RuntimeError):
    """The model files are missing or do not fit, the device asked for is not available, or the
    model failed while running."""
    code = "model_error"


class DerivationError(ModelError):
    """A built-in model's source is missing or does not have the expected shape."""
    code = "model_error"


class GalleryError(ClasSystemError):
    """A gallery cannot be created, opened, read or changed as asked; the message says why."""
    code = "model_error"


class GalleryInputError(GalleryError, BadRequest):
    """What a gallery call was given cannot be used: vectors, labels, docs, ids or k."""
    code = "bad_request"


class GalleryUnavailable(GalleryError, Unavailable):
    """The gallery cannot be used right now: closed, or its Milvus server down or restarting.
    Requests get `unavailable`, and may be retried."""
    code = "unavailable"


class ChildFailed(ClasSystemError):
    """A start-up child process died, or raised something that could not be sent back."""
    code = "model_error"


def wire_code(err):
    """The wire code of any exception: its own in the tree, model_error outside it."""
    return err.code if isinstance(err, ClasSystemError) else "model_error"


def wire_error(err):
    """Any exception -> the `error` object of an answer: code, message, field and index of the
    first problem, and `problems` (each with message, field, index) when there are several."""
    problems = err.problems if isinstance(err, ClasSystemError) else (Problem(str(err) or type(err).__name__),)
    error = {"code": wire_code(err), "message": "; ".join(problem.message for problem in problems),
             "field": problems[0].field, "index": problems[0].index}
    if len(problems) > 1:
        error["problems"] = [problem._asdict() for problem in problems]
    return error
