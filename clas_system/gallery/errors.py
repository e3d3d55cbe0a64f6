"""The gallery's one error: every backend raises it, with a message saying what is wrong."""


class GalleryError(Exception):
    """A gallery cannot be created, opened, read or changed as asked; the message says why."""
