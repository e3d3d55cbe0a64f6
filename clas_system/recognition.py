"""PP-ShiTu recognition: detect -> crop -> embed -> search the gallery -> keep the best boxes.

    recognizer = build_recognizer(load_recognition_settings(params))
    recognizer.recognize([jpeg_bytes])  # -> [[{"bbox": [x1, y1, x2, y2], "rec_docs", "rec_scores", "rec_id"}]]

As PaddleClas's deploy/python/predict_system.py: the detector's boxes plus the whole image are
the candidate regions (the whole image helps recall, and is the only region without a
detector); a region is recognised when its best gallery hit scores at least score_thres; then
recognised boxes overlapping a better one by more than rec_nms_thresh IoU are dropped.
"rec_docs" is the best hit's label and "rec_scores" its score, as in PaddleClas; "rec_id" is its
gallery id (what a gallery remove takes).

A recognition request may narrow or widen the search for itself: return_k, score_thres,
det_threshold and max_det_results (checked and bounded; the settings give the defaults).
"""
import dataclasses
import logging
import math
import time
from typing import Callable, Optional

import numpy as np

from params.recognition import MAX_RETURN_K
from params.schema import ParamsError

from .detection import build_batcher as build_detector_batcher
from .detection import build_detector
from .features import build_batcher as build_feature_batcher
from .features import build_feature_extractor
from .gallery import GalleryError
from .gallery_startup import open_or_build_gallery
from .preprocess import PreprocessError
from .serving import RequestError, check_fields, check_token, image_list, positive_int, prepare_all, raise_if_any

log = logging.getLogger("clas_system")

MAX_DET_RESULTS = 1000
RECOGNITION_FIELDS = ("images", "return_k", "score_thres", "det_threshold", "max_det_results")

GALLERY_ACTIONS = {
    "add": ("gallery", "images", "labels", "docs"),
    "remove": ("gallery", "ids", "labels"),
    "search": ("gallery", "images", "k"),
    "stats": ("gallery",),
    "save": ("gallery",),
}


def whole_image_box(image):
    height, width = image.shape[:2]
    return [0, 0, width, height]


def candidate_boxes(detections, image):
    """Detected boxes as whole pixels (PaddleClas truncates), then the whole image; boxes with no
    pixel left after truncation are skipped."""
    boxes = []
    for detection in detections:
        x1, y1, x2, y2 = (int(v) for v in detection["bbox"])
        if x2 > x1 and y2 > y1:
            boxes.append([x1, y1, x2, y2])
    boxes.append(whole_image_box(image))
    return boxes


def crop(image, box):
    x1, y1, x2, y2 = box
    return image[y1:y2, x1:x2]


def box_iou_plus_one(box, others):
    """IoU of `box` with each row of `others`, with PaddleClas's +1 pixel convention."""
    xx1 = np.maximum(box[0], others[:, 0])
    yy1 = np.maximum(box[1], others[:, 1])
    xx2 = np.minimum(box[2], others[:, 2])
    yy2 = np.minimum(box[3], others[:, 3])
    inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (others[:, 2] - others[:, 0] + 1) * (others[:, 3] - others[:, 1] + 1)
    return inter / (area + areas - inter)


def nms_to_rec_results(results, thresh):
    """PaddleClas's nms_to_rec_results: best rec_scores first, drop boxes overlapping a kept one
    by more than thresh IoU. Ties keep the earlier result (a detected box before the whole image)."""
    if not results:
        return []
    boxes = np.array([r["bbox"] for r in results], np.float32)
    scores = np.array([r["rec_scores"] for r in results], np.float32)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size > 0:
        best = order[0]
        kept.append(results[best])
        rest = order[1:]
        order = rest[box_iou_plus_one(boxes[best], boxes[rest]) <= thresh]
    return kept


# ---- the recognizer --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """What one recognition request searches with."""
    return_k: int
    score_thres: float
    det_threshold: Optional[float]  # None: the detector's own threshold
    max_det_results: Optional[int]  # None: the detector's own max_det_results


@dataclasses.dataclass(frozen=True)
class Recognizer:
    settings: object  # params.recognition.RecognitionSettings
    features: object  # FeatureExtractor
    embed: Callable  # list of tensors -> embeddings, merged across requests (DynamicBatcher)
    detector: Optional[object]  # Detector or SaliencyDetector; None: the whole image is the only region
    detect: Optional[Callable]  # list of detector inputs -> box arrays (DynamicBatcher)
    gallery: object  # gallery.Gallery, live: changes apply to the next search

    def decode_all(self, images):
        """Encoded images -> full-size RGB arrays; every bad image reported by index."""
        return prepare_all(images, self.features.decode)

    @property
    def default_options(self):
        settings = self.settings
        score_thres = settings.score_thres
        if settings.hamming_radius is not None:  # PaddleClas: distance <= radius, i.e. this score or more
            score_thres = 1.0 - settings.hamming_radius / self.features.dim
        return SearchOptions(return_k=settings.return_k, score_thres=score_thres, det_threshold=None,
                             max_det_results=None)

    def detections(self, arrays, options):
        """Detected boxes per image ([] each without a detector)."""
        if self.detector is None:
            return [[] for _ in arrays]
        inputs = prepare_all(arrays, lambda image, _where: self.detector.preprocess(image))
        return [self.detector.to_results(boxes, options.det_threshold, options.max_det_results)
                for boxes in self.detect(inputs)]

    def region_tensors(self, arrays, regions):
        """Model inputs of every region of every image, flat; every failure reported by image index."""
        tensors, errors = [], []
        for i, (image, boxes) in enumerate(zip(arrays, regions)):
            try:
                tensors.extend(self.features.tensor(crop(image, box)) for box in boxes)
            except PreprocessError as err:
                errors.append(f"images[{i}]: {err}")
        raise_if_any(errors)
        return tensors

    def embed_images(self, arrays):
        """Whole images -> embeddings [N, dim], batched with other requests."""
        return np.stack(self.embed(lambda: self.region_tensors(arrays, [[whole_image_box(a)] for a in arrays])))

    def recognize_arrays(self, arrays, options=None):
        """RGB arrays -> one list of {"bbox", "rec_docs", "rec_scores", "rec_id"} per image."""
        options = options or self.default_options
        regions = [candidate_boxes(found, image) for found, image in zip(self.detections(arrays, options), arrays)]
        vectors = np.stack(self.embed(lambda: self.region_tensors(arrays, regions)))
        hits = self.gallery.search(vectors, options.return_k)
        results, start = [], 0
        for boxes in regions:
            recognised = [region_result(box, region_hits, options.score_thres)
                          for box, region_hits in zip(boxes, hits[start:start + len(boxes)])]
            start += len(boxes)
            results.append(nms_to_rec_results([r for r in recognised if r is not None],
                                              self.settings.rec_nms_thresh))
        return results

    def recognize(self, images, options=None):
        """Encoded images (bytes) -> one list of recognised regions per image."""
        return self.recognize_arrays(self.decode_all(images), options)


def region_result(box, hits, score_thres):
    """The region's best hit in PaddleClas's format, or None when it scores below score_thres."""
    if not hits or hits[0].score < score_thres:
        return None
    best = hits[0]
    return {"bbox": list(box), "rec_docs": best.label, "rec_scores": best.score, "rec_id": best.id}


def check_embedding_size(settings, extractor):
    """PaddleClas's IndexProcess.embedding_size, when given, must be what the model makes."""
    if settings.embedding_size is not None and settings.embedding_size != extractor.dim:
        raise ParamsError(f"rec_system.embedding_size: {settings.embedding_size}, but the feature model "
                         f"{settings.feature.model_path} makes {extractor.dim} values; set embedding_size to "
                         f"{extractor.dim} or use the model the gallery was built with")


def rebuild_advice(settings):
    where = settings.gallery.index_dir
    return (f"To rebuild it with this feature model, move {where} away and start with gallery.data_file and "
            f"gallery.image_root set (or run `clas-gallery build --data-file LIST --image-root DIR --index-dir "
            f"{where}`). A gallery built by the earlier default feature model opens again with "
            f"feature.preset 'pplcnet_pulc_1280'")


def build_recognizer(settings):
    """RecognitionSettings -> Recognizer: models checked (loaded on first use), gallery opened,
    built from data_file, or created empty. A corrupt or mismatched gallery raises GalleryError
    saying how to rebuild it."""
    extractor = build_feature_extractor(settings.feature)
    check_embedding_size(settings, extractor)
    detector = build_detector(settings.detector) if settings.detector is not None else None
    try:
        gallery = open_or_build_gallery(settings.gallery, extractor)
    except GalleryError as err:
        raise GalleryError(f"{err}. {rebuild_advice(settings)}") from err
    return Recognizer(settings=settings, features=extractor, embed=build_feature_batcher(extractor),
                      detector=detector, detect=build_detector_batcher(detector) if detector else None,
                      gallery=gallery)


# ---- requests --------------------------------------------------------------------------------

def string_list(request, name, count, allow_none=False):
    """A list of `count` non-empty strings (None items too with allow_none), one per image."""
    values = request[name]
    if not isinstance(values, list):
        raise RequestError(f"{name}: expected a list of strings, one per image, got {type(values).__name__}")
    if len(values) != count:
        raise RequestError(f"{name}: {len(values)} given for {count} images; send one per image")
    errors = [f"{name}[{i}]: expected a non-empty string, got {value!r}" for i, value in enumerate(values)
              if not ((allow_none and value is None) or (isinstance(value, str) and value.strip()))]
    raise_if_any(errors)
    return [value.strip() if isinstance(value, str) else value for value in values]


def id_list(request):
    ids = request["ids"]
    if not isinstance(ids, list) or not ids:
        raise RequestError(f"ids: expected a non-empty list of gallery ids, got {ids!r}")
    bad = [f"ids[{i}]: expected a whole number, got {value!r}" for i, value in enumerate(ids)
           if not isinstance(value, int) or isinstance(value, bool)]
    raise_if_any(bad)
    return ids


def finite_number(request, name, default, low=-math.inf, high=math.inf):
    value = request.get(name)
    if value is None:
        return default
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not low <= value <= high):
        bounds = "" if math.isinf(low) else f" from {low} to {high}"
        raise RequestError(f"{name}: expected a number{bounds}, got {value!r}")
    return float(value)


def search_options(recognizer, request):
    """A recognition request's return_k, score_thres, det_threshold, max_det_results, checked."""
    defaults = recognizer.default_options
    if recognizer.detector is None:
        for name in ("det_threshold", "max_det_results"):
            if request.get(name) is not None:
                raise RequestError(f"{name}: this rec_system runs without a detector (detector is None)")
    return SearchOptions(
        return_k=positive_int(request, "return_k", defaults.return_k, maximum=MAX_RETURN_K),
        score_thres=finite_number(request, "score_thres", defaults.score_thres),
        det_threshold=finite_number(request, "det_threshold", None, 0.0, 1.0),
        max_det_results=positive_int(request, "max_det_results", None, maximum=MAX_DET_RESULTS))


def add_request(recognizer, request):
    images = image_list(request, recognizer.settings.serving)
    if "labels" not in request:
        raise RequestError("labels: missing; send one label per image")
    labels = string_list(request, "labels", len(images))
    docs = string_list(request, "docs", len(images), allow_none=True) if request.get("docs") is not None else None
    vectors = recognizer.embed_images(recognizer.decode_all(images))
    return {"ids": recognizer.gallery.add(vectors, labels, docs)}


def remove_request(recognizer, request):
    if ("ids" in request) == ("labels" in request):
        raise RequestError("remove: send either 'ids' or 'labels' (not both)")
    if "ids" in request:
        return {"removed": recognizer.gallery.remove(ids=id_list(request))}
    labels = request["labels"]
    if not isinstance(labels, list) or not labels:
        raise RequestError(f"labels: expected a non-empty list of labels, got {labels!r}")
    return {"removed": recognizer.gallery.remove(labels=string_list(request, "labels", len(labels)))}


def search_request(recognizer, request):
    images = image_list(request, recognizer.settings.serving)
    k = positive_int(request, "k", recognizer.settings.return_k, maximum=1000)
    hits = recognizer.gallery.search(recognizer.embed_images(recognizer.decode_all(images)), k)
    return {"hits": [[hit._asdict() for hit in image_hits] for image_hits in hits]}


def gallery_request(recognizer, request):
    action = request["gallery"]
    if not isinstance(action, str) or action not in GALLERY_ACTIONS:
        raise RequestError(f"gallery: {action!r} is not an action; use one of {', '.join(GALLERY_ACTIONS)}")
    check_fields(request, GALLERY_ACTIONS[action])
    if action == "add":
        return add_request(recognizer, request)
    if action == "remove":
        return remove_request(recognizer, request)
    if action == "search":
        return search_request(recognizer, request)
    if action == "save":
        recognizer.gallery.save()
    return {"stats": recognizer.gallery.stats()}


def recognition_request(recognizer, request, authorization=None):
    """A rec_system request -> its response (with "elapse", seconds):

    {"images": [base64 image files], "return_k"?, "score_thres"?, "det_threshold"?, "max_det_results"?}
        -> {"prediction": [[{"bbox", "rec_docs", "rec_scores", "rec_id"}]]}
    {"gallery": "add", "images", "labels", "docs"?} -> {"ids": [...]}
    {"gallery": "remove", "ids" | "labels"} -> {"removed": n}
    {"gallery": "search", "images", "k"?} -> {"hits": [[{"id", "label", "doc", "score"}]]}
    {"gallery": "stats"} / {"gallery": "save"} -> {"stats": {...}}
    """
    started = time.perf_counter()
    check_token(recognizer.settings.serving, authorization)
    if "gallery" in request:
        response = gallery_request(recognizer, request)
    else:
        check_fields(request, RECOGNITION_FIELDS)
        options = search_options(recognizer, request)
        response = {"prediction": recognizer.recognize(image_list(request, recognizer.settings.serving), options)}
    return {**response, "elapse": time.perf_counter() - started}
