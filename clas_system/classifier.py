"""The classification engine: settings in, a Classifier out.

    classifier = build_classifier(load_classifier_settings(params))
    classifier.classify([open("cat.jpg", "rb").read()])  # -> [{"class_ids", "scores", "label_names"}]
"""
import dataclasses
import functools
from typing import Callable

import numpy as np

from .batching import DynamicBatcher
from .codec import decode_image
from .postprocess import build_postprocess
from .predictor import LazyPredictor
from .preprocess import build_preprocess, decode_settings


@dataclasses.dataclass(frozen=True)
class Classifier:
    settings: object  # params.ClassifierSettings
    predictor: LazyPredictor
    preprocess: Callable  # HWC uint8 image -> CHW float32 tensor
    postprocess: Callable  # (probs [N, C], top_k) -> results
    to_rgb: bool
    min_side: object  # int or None: how far a JPEG may be reduced while decoding

    @functools.cached_property
    def input_shape(self):
        """The shape (C, H, W) this preprocessing gives every image."""
        return tuple(self.preprocess(np.zeros((512, 512, 3), np.uint8)).shape)

    def image_to_tensor(self, data, where="image"):
        """Encoded image bytes -> model input tensor (decode + preprocess)."""
        serving = self.settings.serving
        image = decode_image(data, where, max_pixels=serving.max_image_pixels,
                             min_side=self.min_side if serving.reduced_decode else None, to_rgb=self.to_rgb)
        return self.preprocess(image)

    def predict_tensors(self, tensors):
        """A list (or stacked array) of input tensors -> probability rows, one per tensor."""
        batch = np.stack(tensors) if isinstance(tensors, list) else tensors
        outputs = self.predictor.run({self.predictor.input_names[0]: batch})
        probs = outputs[0]
        return list(probs.reshape(probs.shape[0], -1))

    def classify(self, images, top_k=None):
        """Encoded images (bytes) -> one result per image, in order, in batches of batch_size."""
        tensors = [self.image_to_tensor(data, f"images[{i}]") for i, data in enumerate(images)]
        size = self.settings.serving.batch_size
        probs = [row for start in range(0, len(tensors), size)
                 for row in self.predict_tensors(tensors[start:start + size])]
        return self.postprocess(np.stack(probs), top_k) if probs else []


def build_classifier(settings):
    """ClassifierSettings -> Classifier. Checks the model files now; loads the model on first use."""
    to_rgb, min_side = decode_settings(settings.preprocess)
    return Classifier(
        settings=settings,
        predictor=LazyPredictor(settings.model_path, settings.predictor, settings.serving.batch_size),
        preprocess=build_preprocess(settings.preprocess),
        postprocess=build_postprocess(settings.postprocess, settings.labels),
        to_rgb=to_rgb,
        min_side=min_side,
    )


def build_batcher(classifier):
    """A DynamicBatcher merging concurrent requests' tensors into model batches."""
    serving = classifier.settings.serving
    return DynamicBatcher(classifier.predict_tensors, serving.batch_size, serving.batch_wait_ms / 1000.0)
