"""PaddleClas serving: classifiers and PP-ShiTu recognizers behind `hub serving start`, and the
client that calls them.

    from clas_system import Client
    Client("http://127.0.0.1:8866").classify(["cat.jpg"])

Importing it costs the client only (requests, numpy). The rooms, from the ground up: errors (one
tree, one table of wire codes), ops (image operations), runtime (how models run), gallery (the
recognition gallery), tasks (what the modules compute), serving (the server around them), client
(what talks to a server); gallery_cli is `clas-gallery`, gallery_list PaddleClas's list file.
The engine in-process:

    from clas_system.tasks.classify import build_classifier
    from params import load_classifier_settings
    build_classifier(load_classifier_settings({"preset": "text_image_orientation"})).classify([jpeg_bytes])
"""
from .client import (BadRequestError, Client, ClientError, ModelFailureError, OverloadedError, ServerError,
                     ServerUnreachable, TooLargeError, UnauthorizedError, UnavailableError)

__all__ = ["BadRequestError", "Client", "ClientError", "ModelFailureError", "OverloadedError", "ServerError",
           "ServerUnreachable", "TooLargeError", "UnauthorizedError", "UnavailableError"]
__version__ = "0.1.0"
