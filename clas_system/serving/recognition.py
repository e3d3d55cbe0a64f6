"""rec_system's requests, parsed and bounded here, then run on the recognizer and its gallery:

    {"images": [base64 image files], "return_k"?, "score_thres"?, "det_threshold"?, "max_det_results"?}
        -> {"prediction": [[{"bbox", "rec_docs", "rec_scores", "rec_id"}]]}
    {"gallery": "add", "images", "labels", "docs"?, "request_id"?} -> {"ids": [...]}  (once per request_id)
    {"gallery": "remove", "ids" | "labels"} -> {"removed": n}
    {"gallery": "search", "images", "k"?} -> {"hits": [[{"id", "label", "doc", "score"}]]}
    {"gallery": "stats"} / {"gallery": "save"} -> {"stats": {..., "calibration": {"score_thres", ...}}}
    {"gallery": "list" | "thumbnail" | "relabel" | "review" | "enrol" | "dismiss", ...}: see serving.curation
"""
import time

from ..errors import BadRequest
from ..gallery.kept_images import keep_images
from ..tasks.recognition import SearchOptions
from .add_once import add_once
from .curation import CURATION_ACTIONS
from .fields import check_fields, check_token, id_list, image_list, number, string_list, whole_number

RECOGNITION_FIELDS = ("images", "return_k", "score_thres", "det_threshold", "max_det_results")
GALLERY_ACTIONS = {
    "add": ("gallery", "images", "labels", "docs", "request_id"),
    "remove": ("gallery", "ids", "labels"),
    "search": ("gallery", "images", "k"),
    "stats": ("gallery",),
    "save": ("gallery",),
    **{action: fields for action, (fields, _run) in CURATION_ACTIONS.items()},
}


def search_options(recognizer, request):
    """A recognition request's return_k, score_thres, det_threshold, max_det_results, checked."""
    defaults = recognizer.default_options
    if recognizer.detector is None:
        for name in ("det_threshold", "max_det_results"):
            if request.get(name) is not None:
                raise BadRequest.for_field(name, "this rec_system runs without a detector (detector is None)")
    return SearchOptions(return_k=whole_number(request, "return_k", defaults.return_k),
                         score_thres=number(request, "score_thres", defaults.score_thres),
                         det_threshold=number(request, "det_threshold", None, 0.0, 1.0),
                         max_det_results=whole_number(request, "max_det_results", None))


def add_request(recognizer, request):
    """An add; sent again with the same request_id, the first answer and no change (serving.add_once)."""
    return add_once(recognizer, request, add_images)


def add_images(recognizer, request):
    images = image_list(request, recognizer.settings.serving)
    if "labels" not in request:
        raise BadRequest.for_field("labels", "missing; send one label per image")
    labels = string_list(request, "labels", len(images))
    docs = string_list(request, "docs", len(images), allow_none=True) if request.get("docs") is not None else None
    arrays = recognizer.decode_all(images)
    ids = recognizer.add_images(arrays, labels, docs)
    keep_images(recognizer.gallery, ids, arrays, recognizer.settings.gallery.curation)
    return {"ids": ids}


def remove_request(recognizer, request):
    if ("ids" in request) == ("labels" in request):
        raise BadRequest("remove: send either 'ids' or 'labels' (not both)")
    if "ids" in request:
        return {"removed": recognizer.gallery.remove(ids=id_list(request))}
    return {"removed": recognizer.gallery.remove(labels=string_list(request, "labels"))}


def search_request(recognizer, request):
    images = image_list(request, recognizer.settings.serving)
    k = whole_number(request, "k", recognizer.settings.return_k)
    hits = recognizer.gallery.search(recognizer.embed_images(recognizer.decode_all(images)), k)  # raw similarity
    return {"hits": [[hit._asdict() for hit in image_hits] for image_hits in hits]}


def gallery_request(recognizer, request):
    action = request["gallery"]
    if not isinstance(action, str) or action not in GALLERY_ACTIONS:
        raise BadRequest.for_field("gallery", f"{action!r} is not an action; use one of {', '.join(GALLERY_ACTIONS)}")
    check_fields(request, GALLERY_ACTIONS[action])
    if action == "add":
        return add_request(recognizer, request)
    if action == "remove":
        return remove_request(recognizer, request)
    if action == "search":
        return search_request(recognizer, request)
    if action in CURATION_ACTIONS:
        return CURATION_ACTIONS[action][1](recognizer, request)
    if action == "save":
        recognizer.gallery.save()
    return {"stats": {**recognizer.gallery.stats(), "calibration": recognizer.calibration_state()}}


def recognition_request(recognizer, request, authorization=None):
    """A rec_system request -> its response, with "elapse" (seconds)."""
    started = time.perf_counter()
    check_token(recognizer.settings.serving, authorization)
    if "gallery" in request:
        response = gallery_request(recognizer, request)
    else:
        check_fields(request, RECOGNITION_FIELDS)
        options = search_options(recognizer, request)
        response = {"prediction": recognizer.recognize(image_list(request, recognizer.settings.serving), options)}
    return {**response, "elapse": time.perf_counter() - started}
