"""The images a command line names: files as given, folders walked (sorted), quoted globs
expanded, or the entries of a PaddleClas gallery list."""
import glob
import os
from dataclasses import dataclass

from ...errors import GalleryError
from ...gallery_list import read_gallery_list

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
GLOB_CHARS = "*?["


class InputError(ValueError):
    """The command line names no usable input (a missing file, an empty folder or glob)."""


@dataclass(frozen=True)
class InputImage:
    path: str  # as found, used in output records
    name: str  # relative to the folder or glob it came from: the --save-vis file name


def is_image_file(name):
    return name.lower().endswith(IMAGE_SUFFIXES)


def folder_images(folder):
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files) if is_image_file(name))
    return [InputImage(path, os.path.relpath(path, folder)) for path in found]


def glob_images(pattern):
    base = pattern
    while any(char in base for char in GLOB_CHARS):
        base = os.path.dirname(base)
    matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p) and is_image_file(p))
    return [InputImage(path, os.path.relpath(path, base or ".")) for path in matches]


def expand_inputs(specs):
    """Files as given, folders walked (sorted), globs expanded -> [InputImage]. A spec that
    finds nothing raises InputError naming it."""
    images = []
    for spec in specs:
        if os.path.isdir(spec):
            found = folder_images(spec)
        elif any(char in spec for char in GLOB_CHARS) and not os.path.exists(spec):
            found = glob_images(spec)
        elif os.path.isfile(spec):
            found = [InputImage(spec, os.path.basename(spec))]
        else:
            raise InputError(f"{spec}: no such file or folder")
        if not found:
            raise InputError(f"{spec}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        images.extend(found)
    return images


def labels_for(images, args):
    if args.label is not None:
        return {image.path: args.label for image in images}
    return {image.path: os.path.basename(os.path.dirname(os.path.abspath(image.path))) for image in images}


def gallery_list_images(args):
    """A PaddleClas gallery list -> ([InputImage], {path: label}); errors name the line."""
    try:
        entries = read_gallery_list(args.list_file, args.image_root, args.delimiter)
    except GalleryError as err:
        raise InputError(str(err)) from None
    if not entries:
        raise InputError(f"{args.list_file}: no entries")
    images = [InputImage(path, os.path.relpath(path, args.image_root)) for path, _ in entries]
    return images, {path: label for path, label in entries}
