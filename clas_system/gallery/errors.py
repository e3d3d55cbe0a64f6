"""The gallery's one error: every backend raises it, with a message saying what is wrong."""
from ..errors import Unavailable


class GalleryError(Exception):
    """A gallery cannot be created, opened, read or changed as asked; the message says why."""


class GalleryUnavailable(GalleryError, Unavailable):
    """The gallery's store cannot be reached right now (a Milvus server down or restarting):
    requests get `unavailable`, and may be retried."""
