"""Feature extraction for PaddleClas recognition models: settings in, a FeatureExtractor out.

    extractor = build_feature_extractor(load_recognition_settings({}).feature)
    extractor.embed_images([jpeg_bytes])  # -> float32 [N, 1280], rows of length 1

Embeddings are L2-normalised (PaddleClas's feature_normalize) unless feature_norm is false;
with binarize they are sign bits (PaddleClas's FeatureBinarize "sign") for a hamming gallery.
With views five_crops an image (or region) is embedded as five square views of it, the centre
square and four corner squares of 0.6 of its short side, and its embedding is the normalised
mean of theirs: what an object looks like over its whole extent, less what one framing shows.
`fingerprint` names the model bytes and the preprocessing exactly, so a gallery can refuse to
be searched with embeddings made any other way.
"""
import dataclasses
import functools
import hashlib
import os
from typing import Callable

import numpy as np

from ..errors import ModelError
from ..ops.decode import decode_image
from ..ops.preprocess import build_preprocess, decode_settings
from ..runtime.batching import serving_batcher
from ..runtime.derived_models import prepare_derived_model
from ..runtime.forked import run_in_child
from ..runtime.model_checks import declared_shapes
from ..runtime.model_files import model_files
from ..runtime.predictor import ImageModel, build_image_model
from .per_image import each_image


def model_sha256(model_path):
    """sha256 over a model's files: the .onnx file, an OpenVINO IR's .xml and .bin, or a Paddle
    folder's program and weights."""
    files = model_files(model_path)
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


CORNER_SHARE = 0.6  # a corner view's side, as a share of the short side


def five_crops(image):
    """The centre square of an HWC image and its four corner squares of CORNER_SHARE of its short side."""
    height, width = image.shape[:2]
    short = min(height, width)
    side = max(1, int(CORNER_SHARE * short))
    top, left = (height - short) // 2, (width - short) // 2
    views = [image[top:top + short, left:left + short]]
    for top in (0, height - side):
        for left in (0, width - side):
            views.append(image[top:top + side, left:left + side])
    return views


VIEWS = {"whole": lambda image: [image], "five_crops": five_crops}


def pool_views(rows, per_item):
    """Embedding rows, per_item consecutive ones per item -> one normalised mean row per item."""
    if per_item == 1:
        return rows
    pooled = np.asarray(rows, np.float32).reshape(-1, per_item, np.shape(rows)[-1]).sum(axis=1)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return list(pooled)


def finish_features(raw, feature_norm, binarize):
    """Model outputs [N, ...] -> float32 rows, L2-normalised if asked; with binarize, their sign
    bits as 0/1 uint8 (the gallery packs them 8 per byte)."""
    features = raw.reshape(raw.shape[0], -1).astype(np.float32)
    if feature_norm:
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if binarize:
        return (features > 0).astype(np.uint8)
    return features


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    settings: object  # params.recognition.FeatureSettings
    model: ImageModel
    preprocess: Callable  # HWC uint8 image in the model's channel order -> CHW float32 tensor
    to_rgb: bool  # the model's channel order (PaddleClas DecodeImage.to_rgb)

    @property
    def predictor(self):
        return self.model.predictor

    @functools.cached_property
    def input_shape(self):
        return tuple(self.preprocess(np.zeros((512, 512, 3), np.uint8)).shape)

    @functools.cached_property
    def dim(self):
        """Values in one embedding (bits, when binarized): the model's declared output size, or,
        when the file leaves it open, one probe run in a forked child (see runtime.forked)."""
        _, output_dims = declared_shapes(self.settings.model_path)
        if output_dims and len(output_dims) > 1 and all(d is not None for d in output_dims[1:]):
            return int(np.prod(output_dims[1:]))
        return run_in_child(self._probe_dim)

    def _probe_dim(self):
        probe = np.zeros((1,) + self.input_shape, np.float32)
        try:
            raw = self.predictor.run({self.predictor.input_names[0]: probe})[0]
        except ModelError:
            raise
        except Exception as err:  # Paddle and ONNX Runtime raise their own error types
            raise ModelError(f"{self.settings.model_path}: the model does not take the preprocessed input "
                             f"{list(probe.shape)}: {err}") from err
        return int(np.prod(raw.shape[1:]))

    @functools.cached_property
    def fingerprint(self):
        """What makes two embeddings comparable: recorded in a gallery, checked when it is opened."""
        settings = self.settings
        fingerprint = {"model_sha256": model_sha256(settings.model_path), "preprocess": repr(settings.preprocess),
                       "dim": self.dim, "feature_norm": settings.feature_norm, "binarize": settings.binarize}
        if settings.views != "whole":  # galleries from before views existed embedded the whole image
            fingerprint["views"] = settings.views
        return fingerprint

    @property
    def views_per_image(self):
        return len(VIEWS[self.settings.views](np.zeros((2, 2, 3), np.uint8)))

    def decode(self, data, where=None):
        """Encoded image bytes -> full-size RGB array. Never a reduced JPEG decode: regions are
        cropped from it, and a gallery image must embed the same way whether it arrives in a
        data_file, a gallery add or a recognition query."""
        return decode_image(data, where, max_pixels=self.settings.serving.max_image_pixels)

    def tensor(self, image):
        """An RGB image (or a crop of one) -> its model input for embed_tensors (resized uint8;
        normalised per batch or in the graph)."""
        return self.model.prepare(image if self.to_rgb else np.ascontiguousarray(image[:, :, ::-1]))

    def view_tensors(self, image):
        """An RGB image (or a crop of one) -> the model inputs of its views (views_per_image of them)."""
        return [self.tensor(view) for view in VIEWS[self.settings.views](image)]

    def embed_tensors(self, tensors):
        """Input tensors -> one embedding row per tensor (the batch function for DynamicBatcher)."""
        raw = self.model.run(list(tensors))
        return list(finish_features(raw, self.settings.feature_norm, self.settings.binarize))

    def pool(self, rows):
        """Rows of embed_tensors over view_tensors, item after item -> one embedding per item."""
        return pool_views(rows, self.views_per_image)

    def embed_images(self, images, names=None):
        """Encoded images (bytes) -> embeddings [N, dim], in batches of batch_size. `names` label
        the images in errors (default images[i])."""
        place = (lambda i: (names[i], None)) if names else (lambda i: ("images", i))
        per_image = each_image(images, lambda data, where=None: self.view_tensors(self.decode(data, where)), place)
        tensors = [tensor for views in per_image for tensor in views]
        size = self.settings.serving.batch_size * self.views_per_image
        rows = []
        for start in range(0, len(tensors), size):
            rows.extend(self.embed_tensors(tensors[start:start + size]))
        dtype = np.uint8 if self.settings.binarize else np.float32
        return np.stack(self.pool(rows)) if rows else np.zeros((0, self.dim), dtype)


def build_feature_extractor(settings):
    """FeatureSettings -> FeatureExtractor. A built-in model is derived now if its cache lacks it;
    the model files are checked now; the model loads on first use."""
    if settings.derived_from is not None:
        prepare_derived_model(settings.derived_from)
    to_rgb, _ = decode_settings(settings.preprocess)
    return FeatureExtractor(
        settings=settings,
        model=build_image_model(settings.model_path, settings.preprocess, settings.predictor,
                                settings.serving.batch_size),
        preprocess=build_preprocess(settings.preprocess),
        to_rgb=to_rgb,
    )


def build_batcher(extractor):
    """A DynamicBatcher merging concurrent requests' images and crops into model batches."""
    return serving_batcher(extractor.embed_tensors, extractor.settings.serving)
