"""The classification engine: settings in, a Classifier out.

    classifier = build_classifier(load_classifier_settings(params))
    classifier.classify([open("cat.jpg", "rb").read()])  # -> [{"class_ids", "scores", "label_names"}]
"""
import dataclasses
import functools
from typing import Callable

import numpy as np

from params.ops import ThreshOutput

from ..ops.decode import decode_image
from ..ops.postprocess import build_postprocess
from ..ops.preprocess import build_preprocess, decode_settings
from ..runtime.batching import serving_batcher
from ..runtime.model_checks import check_input, check_labels, declared_shapes
from ..runtime.predictor import ImageModel, build_image_model
from .per_image import each_image


@dataclasses.dataclass(frozen=True)
class Classifier:
    settings: object  # params.ClassifierSettings
    model: ImageModel
    preprocess: Callable  # HWC uint8 image -> the whole preprocessing's float32 tensor
    postprocess: Callable  # (probs [N, C], top_k) -> results
    to_rgb: bool
    min_side: object  # int or None: how far a JPEG may be reduced while decoding

    @property
    def predictor(self):
        return self.model.predictor

    @functools.cached_property
    def input_shape(self):
        """The shape (C, H, W) this preprocessing gives every image."""
        return tuple(self.preprocess(np.zeros((512, 512, 3), np.uint8)).shape)

    def image_to_tensor(self, data, where=None):
        """Encoded image bytes -> this image's model input: decoded and resized/cropped, a uint8
        image whose cast and normalisation happen once per batch (or in the graph)."""
        serving = self.settings.serving
        image = decode_image(data, where, max_pixels=serving.max_image_pixels,
                             min_side=self.min_side if serving.reduced_decode else None, to_rgb=self.to_rgb)
        return self.model.prepare(image)

    def predict_tensors(self, tensors):
        """image_to_tensor results and/or float32 tensors already preprocessed (PaddleClas's
        ndarray protocol), in any mix -> probability rows, one per item."""
        probs = self.model.run(list(tensors))
        return list(probs.reshape(probs.shape[0], -1))

    def classify(self, images, top_k=None):
        """Encoded images (bytes) -> one result per image, in order, in batches of batch_size."""
        tensors = each_image(images, self.image_to_tensor)
        size = self.settings.serving.batch_size
        probs = [row for start in range(0, len(tensors), size)
                 for row in self.predict_tensors(tensors[start:start + size])]
        return self.postprocess(np.stack(probs), top_k) if probs else []


def build_classifier(settings):
    """ClassifierSettings -> Classifier. Checks the model files now; loads the model on first use."""
    to_rgb, min_side = decode_settings(settings.preprocess)
    return Classifier(
        settings=settings,
        model=build_image_model(settings.model_path, settings.preprocess, settings.predictor,
                                settings.serving.batch_size),
        preprocess=build_preprocess(settings.preprocess),
        postprocess=build_postprocess(settings.postprocess, settings.labels),
        to_rgb=to_rgb,
        min_side=min_side,
    )


def build_batcher(classifier):
    """A DynamicBatcher merging concurrent requests' tensors into model batches."""
    return serving_batcher(classifier.predict_tensors, classifier.settings.serving)


def check_classifier_fits(classifier, where="clas_system"):
    """ParamsError naming both numbers when the labels or the preprocessing do not fit the model."""
    input_dims, output_dims = declared_shapes(classifier.settings.model_path)
    if not isinstance(classifier.settings.postprocess, ThreshOutput):  # its two labels name a threshold's sides
        check_labels(classifier.settings.labels, output_dims, f"{where}.postprocess")
    check_input(classifier.input_shape, input_dims, f"{where}.preprocess")
