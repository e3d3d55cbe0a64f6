"""A request is refused as a whole when any of its images is bad: `each_image` converts every
item, collects every failure with its place, and raises them together, so one answer lists
every bad image and no image of that request reaches the model."""
from ..errors import BadRequest


def request_place(i):
    return "images", i


def each_image(items, convert, place=request_place):
    """[convert(item)] in order. An item that is already a BadRequest (found while reading the
    request, e.g. not base64) and every item convert refuses with one are raised together,
    each located at place(i) -> (field, index)."""
    results, errors = [], []
    for i, item in enumerate(items):
        if isinstance(item, BadRequest):
            errors.append(item.at(*place(i)))
            continue
        try:
            results.append(convert(item))
        except BadRequest as err:
            errors.append(err.at(*place(i)))
    if errors:
        raise BadRequest.combined(errors)
    return results
