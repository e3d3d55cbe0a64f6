"""Result pictures: boxes, captions and Chinese labels drawn, checked on pixels."""
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_system_package
from PIL import Image, ImageDraw

from clas_system.client import visualize
from harness.payloads import REPO, image_path

ARTIFACTS = Path(os.environ.get("CLAS_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
WANGZAI = "misc/wangzai.jpg"


@pytest.fixture(scope="module")
def cjk_font():
    visualize.find_cjk_font.cache_clear()
    needs_system_package("fonts-wqy-microhei", lambda: visualize.find_cjk_font.cache_clear()
                         or visualize.find_cjk_font() is not None)
    visualize.label_font.cache_clear()
    return visualize.find_cjk_font()


def glyph_mask(font, text):
    canvas = Image.new("L", (200, 80), 0)
    ImageDraw.Draw(canvas).text((10, 10), text, font=font, fill=255)
    return np.asarray(canvas) > 128


def test_the_font_has_distinct_chinese_glyphs(cjk_font):
    font = visualize.label_font(40)
    masks = [glyph_mask(font, char) for char in "安慕希旺仔"]
    # A font without the glyphs draws the same empty box (or nothing) for every character.
    assert all(mask.sum() > 80 for mask in masks)
    assert all((a != b).sum() > 80 for i, a in enumerate(masks) for b in masks[i + 1:])


def caption_pixels(picture, box):
    return np.asarray(picture.crop(box)).astype(int)


def test_recognition_picture_draws_box_and_chinese_caption(cjk_font):
    grey = np.full((300, 400, 3), 128, np.uint8)
    regions = [{"bbox": [50, 100, 350, 280], "rec_docs": "安慕希", "rec_scores": 0.93, "rec_id": 1}]
    picture = visualize.draw_result(grey, regions)
    colour = visualize.label_colour("安慕希")
    pixels = np.asarray(picture)
    assert tuple(pixels[190, 50]) == colour and tuple(pixels[280, 200]) == colour  # the box outline
    assert tuple(pixels[190, 200]) == (128, 128, 128)  # inside untouched

    # The caption above the box is the label's colour with white text; the same picture with
    # another Chinese label differs exactly in the caption's glyph pixels.
    caption = caption_pixels(picture, (50, 60, 350, 100))
    assert ((caption == colour).all(axis=2).sum() > 300) and ((caption > 200).all(axis=2).sum() > 60)
    other = visualize.draw_result(grey, [dict(regions[0], rec_docs="旺仔牛奶")])
    assert (caption_pixels(other, (50, 60, 350, 100)) != caption).any(axis=2).sum() > 60

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wangzai = visualize.draw_result(image_path(WANGZAI), [
        {"bbox": [320, 230, 760, 940], "rec_docs": "旺仔牛奶", "rec_scores": 0.97, "rec_id": 3}])
    wangzai.save(ARTIFACTS / "result_recognition_wangzai.jpg", quality=88)


def test_detection_and_classification_pictures():
    grey = np.full((200, 300, 3), 128, np.uint8)
    det = visualize.draw_result(grey, [{"bbox": [10.4, 20.6, 120, 150], "score": 0.8, "label": "foreground"}])
    assert tuple(np.asarray(det)[80, 10]) == visualize.label_colour("foreground")

    top = visualize.draw_result(grey, {"class_ids": [1, 0], "scores": [0.9, 0.1], "label_names": ["180", "0"]})
    pixels = np.asarray(top)
    assert tuple(pixels[2, 2]) == visualize.label_colour("180")  # best line, top-left
    assert tuple(pixels[190, 290]) == (128, 128, 128)
    assert visualize.classification_lines({"class_ids": [7], "scores": [0.5]}) == ["7 0.50"]


def test_a_caption_at_the_top_edge_goes_inside_the_box():
    grey = np.full((200, 300, 3), 128, np.uint8)
    picture = visualize.draw_result(grey, [{"bbox": [0, 0, 300, 200], "score": 0.5, "label": "x"}])
    assert tuple(np.asarray(picture)[5, 10]) == visualize.label_colour("x")


def test_without_a_cjk_font_it_still_draws_and_says_what_to_install(monkeypatch, caplog):
    monkeypatch.setattr(visualize, "find_cjk_font", lambda: None)
    visualize.label_font.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="clas_system"):
            picture = visualize.draw_result(np.zeros((100, 100, 3), np.uint8),
                                            [{"bbox": [5, 30, 90, 90], "score": 0.5, "label": "安"}])
    finally:
        visualize.label_font.cache_clear()
    assert picture.size == (100, 100)
    assert "apt-get install fonts-wqy-microhei" in caplog.text and "CLAS_FONT" in caplog.text


def test_a_missing_font_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("CLAS_FONT", "/nowhere/font.ttf")
    visualize.find_cjk_font.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="CLAS_FONT=/nowhere/font.ttf: no such font file"):
            visualize.find_cjk_font()
    finally:
        visualize.find_cjk_font.cache_clear()


def test_an_unknown_result_shape_is_refused():
    with pytest.raises(ValueError, match="result: expected a clas_system answer"):
        visualize.draw_result(np.zeros((10, 10, 3), np.uint8), "cat")
