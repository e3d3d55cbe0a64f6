"""The client: everything that talks to a running server, installable without the server's
packages (requests and numpy; OpenCV and Pillow only for arrays, pictures and video).

http_client: `Client(url).classify(["a.jpg"])`; errors: what it raises, one class per wire
code; encode: images as the server takes them; visualize: results drawn on images; video:
frames through a module; cli: the `clas-client` command.
"""
from .errors import (BadRequestError, ClientError, ModelFailureError, OverloadedError, ServerError,
                     ServerUnreachable, TooLargeError, UnauthorizedError, UnavailableError)
from .http_client import Client

__all__ = ["BadRequestError", "Client", "ClientError", "ModelFailureError", "OverloadedError", "ServerError",
           "ServerUnreachable", "TooLargeError", "UnauthorizedError", "UnavailableError"]
