"""One validated schema for every served module's settings.

Each module's params.py is plain data; `load_*_settings` checks it once at start-up and returns
typed, frozen settings. Any unknown key or bad value raises `ParamsError` naming the key.
"""
from .classifier import ClassifierParams, ClassifierSettings, load_classifier_settings, read_label_file
from .common import PredictorParams, ServingParams
from .schema import ParamsError, describe

__all__ = [
    "ClassifierParams", "ClassifierSettings", "ParamsError", "PredictorParams", "ServingParams",
    "describe", "load_classifier_settings", "read_label_file",
]
