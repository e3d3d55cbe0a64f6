"""A rec_system gallery add made once per `request_id` (gallery.request_ids), whichever worker or
replica gets its retries. A retry that takes over the claim of a try whose process died first
looks for that try's items: each image already in the gallery as an exact copy (similarity at
least EXACT_COPY) under its own label means the add was made, and its ids are the answer."""
from ..gallery.request_ids import answered_once, check_request_id
from .fields import image_list, string_list

EXACT_COPY = 0.99  # the same image embedded again (batched differently, bf16) scores above this
NEAREST = 10  # hits looked at per image: copies of one image may sit under other labels too


def add_once(recognizer, request, add_images):
    """add_images(recognizer, request) -> {"ids"}, once per the request's request_id."""
    request_id = check_request_id(request.get("request_id"))
    return answered_once(recognizer.gallery.side, request_id, lambda: add_images(recognizer, request),
                         recover=lambda: items_already_added(recognizer, request))


def items_already_added(recognizer, request):
    """{"ids": [...]} of an add's images found in the gallery as exact copies under their labels, or None."""
    if "labels" not in request:
        return None  # the add itself says what is wrong
    images = image_list(request, recognizer.settings.serving)
    labels = string_list(request, "labels", len(images))
    hits = recognizer.gallery.search(recognizer.embed_images(recognizer.decode_all(images)), NEAREST)
    ids = [next((hit.id for hit in found if hit.label == label and hit.score >= EXACT_COPY), None)
           for found, label in zip(hits, labels)]
    return None if None in ids else {"ids": ids}
