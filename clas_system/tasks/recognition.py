"""PP-ShiTu recognition: detect -> crop -> embed -> search the gallery -> keep the best boxes.

    recognizer = build_recognizer(load_recognition_settings(params))
    recognizer.recognize([jpeg_bytes])  # -> [[{"bbox": [x1, y1, x2, y2], "rec_docs", "rec_scores", "rec_id"}]]

As PaddleClas's deploy/python/predict_system.py: the detector's boxes plus the whole image are
the candidate regions (the whole image helps recall, and is the only region without a
detector); a region is recognised when its best gallery hit scores at least score_thres; then
recognised boxes overlapping a better one by more than rec_nms_thresh IoU are dropped.
"rec_docs" is the best hit's label and "rec_scores" its score, as in PaddleClas; "rec_id" is its
gallery id (what a gallery remove takes). With scoring "crowding" a hit's score is its similarity
less its gallery item's crowding (tasks.crowding), and hits are ranked by that. With
target_false_accept set, the default score_thres is the gallery's own (tasks.recalibration),
the settings' score_thres until it is worked out. With verification "local_features" each
item's keypoints are kept at add time and a region's best hits are verified against them
(tasks.verifier): a hit's score gains its inliers' weight, fitted with that threshold.

A recognition request may narrow or widen the search for itself (SearchOptions: return_k,
score_thres, det_threshold, max_det_results; the settings give the defaults).
"""
import dataclasses
from typing import Callable, Optional

import numpy as np

from params.schema import ParamsError

from ..errors import GalleryError
from ..gallery.review import ReviewQueue
from ..gallery.startup import open_or_build_gallery
from .detect import build_batcher as build_detector_batcher
from .detect import build_detector
from .features import build_batcher as build_feature_batcher
from .crowding import RERANK_K, WEIGHT, Crowding
from .features import build_feature_extractor
from .per_image import each_image
from .recalibration import LiveCalibration
from .verifier import VERIFY_K, Verifier


def whole_image_box(image):
    height, width = image.shape[:2]
    return [0, 0, width, height]


def candidate_boxes(detections, image, large_box_share=None):
    """Detected boxes as whole pixels (PaddleClas truncates), then the whole image; boxes with no
    pixel left after truncation are skipped, and so are boxes covering at least large_box_share
    of the image (the whole image stands for them)."""
    height, width = image.shape[:2]
    boxes = []
    for detection in detections:
        x1, y1, x2, y2 = (int(v) for v in detection["bbox"])
        if x2 > x1 and y2 > y1 and (large_box_share is None or (x2 - x1) * (y2 - y1) < large_box_share * width * height):
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
    crowding: Optional[Crowding]  # scoring "crowding"; None: plain similarities
    calibration: Optional[LiveCalibration] = None  # None: the settings' score_thres, fixed
    review: Optional[ReviewQueue] = None  # keeps rejected regions (gallery.curation.review_max > 0)
    verifier: Optional[Verifier] = None  # None: no local features kept or verified

    def decode_all(self, images):
        """Encoded images (or BadRequests found reading them) -> full-size RGB arrays; every bad
        image reported by index."""
        return each_image(images, self.features.decode)

    @property
    def default_options(self):
        settings = self.settings
        score_thres = settings.score_thres if self.calibration is None else self.calibration.score_thres()
        if settings.hamming_radius is not None:  # PaddleClas: distance <= radius, i.e. this score or more
            score_thres = 1.0 - settings.hamming_radius / self.features.dim
        return SearchOptions(return_k=settings.return_k, score_thres=score_thres, det_threshold=None,
                             max_det_results=None)

    def calibration_state(self):
        """Where the default score_thres comes from (stats, /ready, /metrics)."""
        if self.calibration is None:
            return {"score_thres": self.default_options.score_thres, "calibrated": False,
                    "reason": "fixed score_thres (target_false_accept is off)"}
        if self.verifier is None:
            return self.calibration.state()
        inliers = self.calibration.inlier_weight()
        return {**self.calibration.state(), "inlier_floor": inliers.floor, "inlier_weight": inliers.weight,
                "regions_verified": self.verifier.regions_verified}

    def detections(self, arrays, options):
        """Detected boxes per image ([] each without a detector)."""
        if self.detector is None:
            return [[] for _ in arrays]
        inputs = each_image(arrays, self.detector.preprocess)
        return [self.detector.to_results(boxes, options.det_threshold, options.max_det_results)
                for boxes in self.detect(inputs)]

    def candidate_regions(self, arrays, options):
        """Each image's candidate boxes: the detected ones, then the whole image (candidate_boxes)."""
        return [candidate_boxes(found, image, self.settings.large_box_share)
                for found, image in zip(self.detections(arrays, options), arrays)]

    def region_tensors(self, arrays, regions):
        """Model inputs of every view of every region of every image, flat; every failure reported
        by image index."""
        per_image = each_image(list(zip(arrays, regions)), lambda pair: [
            tensor for box in pair[1] for tensor in self.features.view_tensors(crop(pair[0], box))])
        return [tensor for tensors in per_image for tensor in tensors]

    def embed_regions(self, arrays, regions):
        """Embeddings [regions, dim] of every region of every image, batched with other requests."""
        return np.stack(self.features.pool(self.embed(lambda: self.region_tensors(arrays, regions))))

    def embed_images(self, arrays):
        """Whole images -> embeddings [N, dim], batched with other requests."""
        return self.embed_regions(arrays, [[whole_image_box(a)] for a in arrays])

    def search(self, vectors, return_k):
        """Each region's best hits, at most return_k, best first (re-scored with crowding)."""
        if self.crowding is None:
            return self.gallery.search(vectors, return_k)
        hits = self.crowding.rescore(self.gallery.search(vectors, max(return_k, RERANK_K)))
        return [region_hits[:return_k] for region_hits in hits]

    def region_vectors(self, arrays):
        """Each image's candidate regions' embeddings [regions, dim], as recognize_arrays makes them."""
        detector_defaults = SearchOptions(return_k=1, score_thres=0.0, det_threshold=None, max_det_results=None)
        regions = self.candidate_regions(arrays, detector_defaults)
        vectors = self.embed_regions(arrays, regions)
        ends = np.cumsum([len(boxes) for boxes in regions])
        return np.split(vectors, ends[:-1])

    def verified_search(self, vectors, crops, options):
        """search, then (with a verifier) each region's best hits verified against its crop. Which
        regions need verifying is judged at the default threshold, not the request's, so a hit's
        score does not depend on the score_thres a request sends."""
        if self.verifier is None:
            return self.search(vectors, options.return_k)
        hits = self.verifier.rescore(crops, self.search(vectors, max(options.return_k, VERIFY_K)),
                                     self.calibration.inlier_weight(), self.default_options.score_thres)
        return [region_hits[:options.return_k] for region_hits in hits]

    def add_images(self, arrays, labels, docs=None):
        """RGB arrays -> new gallery items (and their keypoints, with a verifier); their ids."""
        ids = self.gallery.add(self.embed_images(arrays), labels, docs)
        if self.verifier is not None:
            self.verifier.keep(ids, arrays)
        return ids

    def recognize_arrays(self, arrays, options=None):
        """RGB arrays -> one list of {"bbox", "rec_docs", "rec_scores", "rec_id"} per image."""
        options = options or self.default_options
        regions = self.candidate_regions(arrays, options)
        crops = [crop(image, box) for image, boxes in zip(arrays, regions) for box in boxes]
        hits = self.verified_search(self.embed_regions(arrays, regions), crops, options)
        results, start = [], 0
        for image, boxes in zip(arrays, regions):
            recognised = [region_result(box, region_hits, options.score_thres)
                          for box, region_hits in zip(boxes, hits[start:start + len(boxes)])]
            kept = nms_to_rec_results([r for r in recognised if r is not None], self.settings.rec_nms_thresh)
            if self.review is not None:
                for box, hit in rejected_regions(boxes, hits[start:start + len(boxes)], recognised, kept,
                                                 self.settings.rec_nms_thresh):
                    self.review.offer(crop(image, box), hit)
            start += len(boxes)
            results.append(kept)
        return results

    def recognize(self, images, options=None):
        """Encoded images (bytes) -> one list of recognised regions per image."""
        return self.recognize_arrays(self.decode_all(images), options)


MAX_REVIEWED_PER_IMAGE = 4


def rejected_regions(boxes, hits, recognised, kept, nms_thresh):
    """(box, best hit or None) of the regions worth a person's look: not recognised, overlapping no
    kept result by more than nms_thresh; the whole image (the last box) only when it is the only
    region. At most MAX_REVIEWED_PER_IMAGE."""
    kept_boxes = np.array([result["bbox"] for result in kept], np.float32).reshape(-1, 4)
    rejected = []
    for i, (box, region_hits, result) in enumerate(zip(boxes, hits, recognised)):
        if result is not None or (i == len(boxes) - 1 and len(boxes) > 1):
            continue
        if len(kept_boxes) and box_iou_plus_one(np.asarray(box, np.float32), kept_boxes).max() > nms_thresh:
            continue
        rejected.append((box, region_hits[0] if region_hits else None))
    return rejected[:MAX_REVIEWED_PER_IMAGE]


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
    return (f"To re-embed it for this feature model from the regions it kept, run `clas-gallery reembed "
            f"--index-dir {where} --to-preset PRESET` (or --set model_dir=...). "
            f"To rebuild it from the original files, move {where} away and start with gallery.data_file and "
            f"gallery.image_root set (or run `clas-gallery build --data-file LIST --image-root DIR --index-dir "
            f"{where}`). A gallery built by an earlier default feature model opens again with its "
            f"feature.preset: 'dinov2_vits14' (before 2026-12) or 'pplcnet_pulc_1280' (before 2026-11)")


def keep_keypoints(gallery, ids, arrays):
    """What a gallery built from a data_file calls after each add: the new items' keypoints kept."""
    Verifier(gallery.side).keep(ids, arrays)


def build_recognizer(settings):
    """RecognitionSettings -> Recognizer: models checked (loaded on first use), gallery opened,
    built from data_file, or created empty. A corrupt or mismatched gallery raises GalleryError
    saying how to rebuild it."""
    extractor = build_feature_extractor(settings.feature)
    check_embedding_size(settings, extractor)
    detector = build_detector(settings.detector) if settings.detector is not None else None
    if detector is not None:  # one request's regions are embedded while the next image is searched for boxes
        extractor.predictor.models_side_by_side = detector.predictor.models_side_by_side = 2
    try:
        gallery = open_or_build_gallery(settings.gallery, extractor,
                                        keep=keep_keypoints if settings.verification else None)
    except GalleryError as err:
        raise GalleryError(f"{err}. {rebuild_advice(settings)}") from err
    crowding = Crowding(gallery) if settings.scoring == "crowding" else None
    verifier = Verifier(gallery.side) if settings.verification == "local_features" else None
    calibration = (LiveCalibration(gallery, settings.target_false_accept, WEIGHT if crowding else 0.0,
                                   settings.score_thres, verifier=verifier)
                   if settings.target_false_accept is not None else None)
    return Recognizer(settings=settings, features=extractor, embed=build_feature_batcher(extractor),
                      detector=detector, detect=build_detector_batcher(detector) if detector else None,
                      gallery=gallery, crowding=crowding, calibration=calibration, verifier=verifier,
                      review=ReviewQueue(gallery, settings.gallery.curation) if settings.gallery.curation.review_max
                      else None)
