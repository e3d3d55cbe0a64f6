"""The error tree and its one table of wire codes: every exception the engine and the gallery
define maps to exactly one code, problems travel as attributes, and the client's classes are the
same table's."""
import importlib
import inspect
import pkgutil

import pytest

import clas_system
from clas_system import errors
from clas_system.client import errors as client_errors
from clas_system.errors import (WIRE_CODES, BadRequest, ClasSystemError, GalleryInputError, ImageError, Overloaded,
                                TooLarge, wire_code, wire_error)
from clas_system.gallery.interface import check_labels

# Every exception class the engine (everything but the client) defines, and its wire code.
EXPECTED_CODES = {
    "ClasSystemError": "model_error",
    "BadRequest": "bad_request",
    "TooLarge": "too_large",
    "ImageError": "bad_request",
    "ImageTooLarge": "too_large",
    "PreprocessError": "bad_request",
    "Unauthorized": "unauthorized",
    "Overloaded": "overloaded",
    "Unavailable": "unavailable",
    "ModelError": "model_error",
    "DerivationError": "model_error",
    "GalleryError": "model_error",
    "GalleryInputError": "bad_request",
    "GalleryUnavailable": "unavailable",
    "ChildFailed": "model_error",
    "TooFewSamples": "bad_request",
}


def engine_exception_classes():
    """{name: class} of every exception class defined in clas_system outside the client."""
    found = {}
    for info in pkgutil.walk_packages(clas_system.__path__, "clas_system."):
        if info.name.startswith("clas_system.client") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[name] = value
    return found


def test_every_engine_exception_maps_to_exactly_one_wire_code():
    classes = engine_exception_classes()
    assert set(classes) == set(EXPECTED_CODES), "a new exception needs its wire code here and in its class"
    for name, cls in classes.items():
        assert issubclass(cls, ClasSystemError), name
        assert "code" in vars(cls), f"{name} inherits its code; declare it"
        assert wire_code(cls("x")) == EXPECTED_CODES[name], name
        assert cls.code in WIRE_CODES, name


def test_anything_outside_the_tree_is_a_server_fault():
    assert wire_code(KeyError("x")) == wire_code(RuntimeError()) == "model_error"
    assert wire_error(RuntimeError())["message"] == "RuntimeError"


def test_problems_are_attributes_never_read_back_from_the_text():
    err = ImageError("not a decodable image").at("images", 3)
    assert (err.field, err.index, str(err)) == ("images", 3, "images[3]: not a decodable image")
    overloaded = Overloaded("overloaded: 8 requests already running or waiting; retry shortly")
    assert wire_error(overloaded) == {"code": "overloaded", "message": str(overloaded), "field": None, "index": None}


def test_several_problems_all_reach_the_wire():
    combined = BadRequest.combined([ImageError("not valid base64").at("images", 1),
                                    ImageError("empty image (0 bytes)").at("images", 4)])
    error = wire_error(combined)
    assert (error["code"], error["field"], error["index"]) == ("bad_request", "images", 1)
    assert [(p["field"], p["index"]) for p in error["problems"]] == [("images", 1), ("images", 4)]
    assert error["message"] == "images[1]: not valid base64; images[4]: empty image (0 bytes)"
    assert isinstance(BadRequest.combined([TooLarge("a"), TooLarge("b")]), TooLarge)


def test_a_label_too_long_for_the_gallery_is_a_bad_request():
    with pytest.raises(GalleryInputError) as err:
        check_labels(["ok", "x" * 70_000], 2, max_bytes=65_535)
    assert (wire_code(err.value), err.value.field, err.value.index) == ("bad_request", "labels", 1)
    assert WIRE_CODES[wire_code(err.value)].http_status == 400


@pytest.mark.parametrize("entry", list(WIRE_CODES.values()), ids=list(WIRE_CODES))
def test_the_client_raises_the_class_the_table_names(entry):
    cls = getattr(client_errors, entry.client_class)
    assert cls is client_errors.ERROR_CLASSES[entry.code] and cls.code == entry.code
    assert getattr(clas_system, entry.client_class) is cls
    parent = client_errors.ERROR_CLASSES[entry.refines] if entry.refines else client_errors.ServerError
    assert cls.__bases__ == (parent,)
    assert entry.retryable == issubclass(cls, client_errors.RETRIED)

    class Answer:
        status_code = entry.http_status
        text = ""

    body = {"status": "101", "msg": "m", "results": "",
            "error": {"code": entry.code, "message": "m", "field": "images", "index": 2}}
    raised = client_errors.answer_error(Answer(), body)
    assert type(raised) is cls and (raised.field, raised.index, raised.http_status) == ("images", 2, entry.http_status)


def test_the_client_has_one_class_for_each_code_and_no_other():
    assert set(client_errors.ERROR_CLASSES) == set(WIRE_CODES)
    assert {cls.__name__ for cls in client_errors.ERROR_CLASSES.values()} == {
        entry.client_class for entry in WIRE_CODES.values()}


def test_every_server_class_names_a_code_in_the_table():
    for name in dir(errors):
        value = getattr(errors, name)
        if inspect.isclass(value) and issubclass(value, ClasSystemError):
            assert value.code in WIRE_CODES, name
