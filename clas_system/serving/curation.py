"""rec_system's gallery actions for curating it, parsed and bounded here:

    {"gallery": "list", "offset"?, "limit"?, "label"?, "query"?, "after"?}
        -> {"items": [{"id", "label", "doc", "added_at"}], "total": n}   (id order; total: all matches)
    {"gallery": "thumbnail", "ids"} -> {"thumbnails": [base64 JPEG or null per id]}
    {"gallery": "relabel", "ids" | "labels", "label"} -> {"relabelled": n}
    {"gallery": "review", "offset"?, "limit"?}
        -> {"entries": [{"id", "at", "candidate": {"id", "label", "score"} | null, "thumbnail"}], "total": n,
            "enabled": bool}   (newest first; gallery.review)
    {"gallery": "enrol", "id", "label", "doc"?} -> {"ids": [new id]}   (the entry's region becomes an item)
    {"gallery": "dismiss", "ids"} -> {"dismissed": n}
"""
import base64

from ..errors import BadRequest
from ..gallery.interface import MAX_LIST_LIMIT
from ..gallery.kept_images import THUMBNAIL, keep_images
from ..gallery.review import MAX_PAGE, ReviewQueue
from .fields import id_list, json_type, string_list

MAX_THUMBNAILS = 200  # ids in one thumbnail request
DEFAULT_LIMIT = 50


def count_field(request, name, default, low, high=None):
    value = request.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BadRequest.for_field(name, f"expected a whole number >= {low}, got {value!r}")
    if high is not None and value > high:
        raise BadRequest.for_field(name, f"{value} is over the maximum of {high}")
    return value


def text_field(request, name):
    """An optional non-empty string (stripped), None when absent or null."""
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest.for_field(name, f"expected a non-empty string, got {json_type(value)}")
    return value.strip()


def list_request(recognizer, request):
    gallery = recognizer.gallery
    items, total = gallery.list_items(offset=count_field(request, "offset", 0, 0),
                                      limit=count_field(request, "limit", DEFAULT_LIMIT, 1, MAX_LIST_LIMIT),
                                      label=text_field(request, "label"), text=text_field(request, "query"),
                                      after=count_field(request, "after", None, 0))
    return {"items": [item._asdict() for item in items], "total": total}


def thumbnail_request(recognizer, request):
    if "ids" not in request:
        raise BadRequest.for_field("ids", "missing; send the gallery ids whose thumbnails you want")
    ids = id_list(request)
    if len(ids) > MAX_THUMBNAILS:
        raise BadRequest.for_field("ids", f"{len(ids)} ids, over the limit of {MAX_THUMBNAILS} per request")
    return {"thumbnails": [None if data is None else base64.b64encode(data).decode()
                           for data in recognizer.gallery.side.get(THUMBNAIL, ids)]}


def relabel_request(recognizer, request):
    gallery = recognizer.gallery
    if ("ids" in request) == ("labels" in request):
        raise BadRequest("relabel: send either 'ids' or 'labels' (not both), and the new 'label'")
    label = text_field(request, "label")
    if label is None:
        raise BadRequest.for_field("label", "missing; send the new label")
    if "ids" in request:
        return {"relabelled": gallery.relabel(label, ids=id_list(request))}
    return {"relabelled": gallery.relabel(label, labels=string_list(request, "labels"))}


def review_queue(recognizer):
    return recognizer.review or ReviewQueue(recognizer.gallery, recognizer.settings.gallery.curation)


def b64(data):
    return None if data is None else base64.b64encode(data).decode()


def review_request(recognizer, request):
    queue = review_queue(recognizer)
    entries, total = queue.entries(count_field(request, "offset", 0, 0),
                                   count_field(request, "limit", DEFAULT_LIMIT, 1, MAX_PAGE))
    return {"entries": [{"id": e.id, "at": e.at, "candidate": e.candidate, "thumbnail": b64(e.thumbnail)}
                        for e in entries], "total": total, "enabled": queue.enabled}


def enrol_request(recognizer, request):
    entry = count_field(request, "id", None, 0)
    label = text_field(request, "label")
    if entry is None or label is None:
        raise BadRequest("enrol: send the review entry's 'id' and the 'label' to enrol it under")
    doc = text_field(request, "doc")
    queue = review_queue(recognizer)
    arrays = recognizer.decode_all([queue.region(entry)])
    ids = recognizer.add_images(arrays, [label], [doc])  # with its keypoints when the recognizer verifies
    keep_images(recognizer.gallery, ids, arrays, recognizer.settings.gallery.curation)
    queue.dismiss([entry])
    return {"ids": ids}


def dismiss_request(recognizer, request):
    if "ids" not in request:
        raise BadRequest.for_field("ids", "missing; send the review entries' ids")
    return {"dismissed": review_queue(recognizer).dismiss(id_list(request))}


CURATION_ACTIONS = {
    "list": (("gallery", "offset", "limit", "label", "query", "after"), list_request),
    "thumbnail": (("gallery", "ids"), thumbnail_request),
    "relabel": (("gallery", "ids", "labels", "label"), relabel_request),
    "review": (("gallery", "offset", "limit"), review_request),
    "enrol": (("gallery", "id", "label", "doc"), enrol_request),
    "dismiss": (("gallery", "ids"), dismiss_request),
}
