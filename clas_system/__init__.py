"""PaddleClas serving engine: predictor, PaddleClas-compatible ops, recognition, HTTP client.

Importable without PaddleHub. The obvious calls:

    from clas_system import Client
    Client("http://127.0.0.1:8866").classify(["cat.jpg"])

    from clas_system import build_classifier
    from params import load_classifier_settings
    build_classifier(load_classifier_settings({"preset": "text_image_orientation"})).classify([jpeg_bytes])
"""
from .classifier import Classifier, build_classifier
from .client import (BadRequestError, Client, ClientError, ModelFailureError, OverloadedError, ServerError,
                     ServerUnreachable, TooLargeError, UnauthorizedError, UnavailableError)

__all__ = ["BadRequestError", "Classifier", "Client", "ClientError", "ModelFailureError", "OverloadedError",
           "ServerError", "ServerUnreachable", "TooLargeError", "UnauthorizedError", "UnavailableError",
           "build_classifier"]
__version__ = "0.1.0"
