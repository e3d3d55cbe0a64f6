"""Result pictures: boxes, labels and scores drawn on the image the model saw.

`draw_result(image, result)` takes any one per-image answer of clas_system (top-k), det_system
(boxes) or rec_system (recognised boxes) and returns a PIL image. Labels are drawn with a font
that has Chinese glyphs (PaddleClas galleries use Chinese labels), found on the machine without
any download: $CLAS_FONT, then the files of Debian's fonts-wqy-microhei / fonts-noto-cjk /
fonts-wqy-zenhei / fonts-arphic-uming / fonts-droid-fallback, then fontconfig's list of fonts
that cover Chinese. With none of them the picture is still drawn, with Pillow's built-in font
(Latin only), and one warning says what to install.
"""
import functools
import hashlib
import logging
import os
import shutil
import subprocess

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..ops.decode import decode_image
from .encode import read_image_bytes

log = logging.getLogger("clas_system")

FONT_ENV = "CLAS_FONT"
DEBIAN_CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
MISSING_FONT_ADVICE = ("no font with Chinese glyphs found; labels are drawn with Pillow's built-in Latin font "
                       "and Chinese characters will not show. Install one (apt-get install fonts-wqy-microhei) "
                       f"or set {FONT_ENV}=/path/to/a/cjk/font.ttf")
# Distinct colours that stay readable under white text.
PALETTE = ((230, 25, 75), (60, 140, 60), (0, 130, 200), (245, 130, 48), (145, 30, 180), (0, 128, 128),
           (170, 110, 40), (128, 0, 0), (0, 0, 128), (128, 128, 0))


def fontconfig_cjk_fonts():
    """Font files fontconfig says cover Chinese (empty when fc-list is not installed)."""
    if shutil.which("fc-list") is None:
        return []
    listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=20).stdout
    return sorted(line.strip().rstrip(":") for line in listed.splitlines() if line.strip())


@functools.lru_cache(maxsize=1)
def find_cjk_font():
    """Path of a font file with Chinese glyphs, or None. $CLAS_FONT wins when it is set."""
    chosen = os.environ.get(FONT_ENV)
    if chosen:
        if not os.path.isfile(chosen):
            raise FileNotFoundError(f"{FONT_ENV}={chosen}: no such font file")
        return chosen
    for path in DEBIAN_CJK_FONTS:
        if os.path.isfile(path):
            return path
    listed = fontconfig_cjk_fonts()
    return listed[0] if listed else None


@functools.lru_cache(maxsize=16)
def label_font(size):
    """A FreeType font of `size` pixels with Chinese glyphs, else Pillow's built-in one (one warning)."""
    path = find_cjk_font()
    if path is None:
        log.warning(MISSING_FONT_ADVICE)
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def label_colour(label):
    """The same label gets the same colour in every picture."""
    digest = hashlib.md5(str(label).encode("utf-8")).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def as_pil(image):
    """A path, encoded bytes, an HWC RGB uint8 array or a PIL image -> an RGB PIL image (a copy)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    return Image.fromarray(decode_image(read_image_bytes(image), where=str(image)[:200]))


def format_score(score):
    return f"{score:.2f}"


def region_captions(result):
    """A det_system or rec_system list of regions -> [(bbox, caption, colour key)]."""
    captions = []
    for region in result:
        if "rec_docs" in region:
            label, score = region["rec_docs"], region["rec_scores"]
        else:
            label, score = region.get("label", ""), region["score"]
        captions.append((region["bbox"], f"{label} {format_score(score)}", label))
    return captions


def classification_lines(result):
    """A clas_system answer -> ['label score', ...], best first."""
    names = result.get("label_names") or [str(i) for i in result["class_ids"]]
    return [f"{name} {format_score(score)}" for name, score in zip(names, result["scores"])]


def text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top, left, top


def draw_caption(draw, xy, text, font, colour, image_size):
    """White text on a filled box whose top-left is at xy, kept inside the picture."""
    width, height, left, top = text_size(draw, text, font)
    pad = max(2, font.size // 6)
    x = min(max(0, xy[0]), max(0, image_size[0] - width - 2 * pad))
    y = min(max(0, xy[1]), max(0, image_size[1] - height - 2 * pad))
    draw.rectangle([x, y, x + width + 2 * pad, y + height + 2 * pad], fill=colour)
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=(255, 255, 255))
    return height + 2 * pad


def font_size_for(image_size):
    return max(14, min(48, round(min(image_size) / 22)))


def draw_regions(picture, result):
    """Boxes with 'label score' captions above them (inside the box when there is no room above)."""
    draw = ImageDraw.Draw(picture)
    font = label_font(font_size_for(picture.size))
    line = max(2, round(min(picture.size) / 200))
    for bbox, caption, key in region_captions(result):
        x1, y1, x2, y2 = (round(v) for v in bbox)
        colour = label_colour(key)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        _, height, _, _ = text_size(draw, caption, font)
        caption_top = y1 - height - 2 * max(2, font.size // 6)
        draw_caption(draw, (x1, caption_top if caption_top >= 0 else y1 + line), caption, font, colour, picture.size)
    return picture


def draw_topk(picture, result):
    """Top-k 'label score' lines in the top-left corner, the best one in its label's colour."""
    draw = ImageDraw.Draw(picture)
    font = label_font(font_size_for(picture.size))
    y = 0
    for rank, line in enumerate(classification_lines(result)):
        colour = label_colour(line.rsplit(" ", 1)[0]) if rank == 0 else (60, 60, 60)
        y += draw_caption(draw, (0, y), line, font, colour, picture.size)
    return picture


def draw_result(image, result):
    """One image and its answer (clas_system dict, or det_system / rec_system list of regions)
    -> a new RGB PIL image with the answer drawn on it."""
    picture = as_pil(image)
    if isinstance(result, dict) and "scores" in result:
        return draw_topk(picture, result)
    if isinstance(result, list):
        return draw_regions(picture, result)
    raise ValueError("result: expected a clas_system answer ({'class_ids', 'scores', ...}) or a list of "
                     f"det_system / rec_system regions, got {type(result).__name__}")


def save_result(image, result, path):
    """draw_result and write it to `path` (format from the suffix); returns the path."""
    draw_result(image, result).save(path)
    return path
