"""The client takes every field the server's request parsers take, by the same name, so no
caller (the command line, video, a user) has to build a request payload itself."""
import inspect

import pytest

from clas_system.client import Client
from clas_system.serving.classify import CLASSIFY_FIELDS
from clas_system.serving.detect import DETECT_FIELDS
from clas_system.serving.recognition import RECOGNITION_FIELDS

# What the client sends in its own way: images as encoded files; PaddleClas's ndarray protocol
# (revert_params) is for preprocessed tensors, which this client does not send.
SENT_OTHERWISE = {"images", "revert_params"}


@pytest.mark.parametrize("method, fields", [(Client.classify, CLASSIFY_FIELDS), (Client.detect, DETECT_FIELDS),
                                            (Client.recognize, RECOGNITION_FIELDS)],
                         ids=["classify", "detect", "recognize"])
def test_each_method_takes_every_field_of_its_module(method, fields):
    parameters = set(inspect.signature(method).parameters)
    missing = set(fields) - SENT_OTHERWISE - parameters
    assert not missing, f"Client.{method.__name__} cannot send {sorted(missing)}"
