"""PaddleClas's gallery list file: `relative/image/path<delimiter>label` per line. Read by the
gallery's start-up build and by the client's `gallery import` alike, so it needs nothing but the
standard library."""
import os
from pathlib import Path

from .errors import GalleryError, short

DELIMITER_NAMES = {"\t": "a tab", " ": "a space", ",": "a comma", ";": "a semicolon"}


def read_gallery_list(list_path, image_root, delimiter="\t"):
    """PaddleClas gallery list (`relative/path<delimiter>label` per line) -> [(absolute image path, label)].

    Blank lines are skipped. Labels may contain spaces; surrounding whitespace is stripped."""
    if not isinstance(delimiter, str) or not delimiter:
        raise GalleryError(f"delimiter must be a non-empty string, got {delimiter!r}")
    separator = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    try:
        lines = Path(list_path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise GalleryError(f"cannot read gallery list {list_path}: {e}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(delimiter)]
        if len(fields) != 2 or not all(fields):
            hint = " (it has spaces but no tab)" if delimiter == "\t" and "\t" not in line and " " in line else ""
            raise GalleryError(
                f"{list_path}, line {number}: expected two non-empty fields, image path and label, separated "
                f"by {separator}; got {short(repr(line))}{hint}. The separator must be {separator} "
                f"(pass delimiter=... for another)")
        image_path = os.path.abspath(os.path.join(image_root, fields[0]))
        if not os.path.isfile(image_path):
            raise GalleryError(f"{list_path}, line {number}: image {image_path} does not exist")
        entries.append((image_path, fields[1]))
    return entries
