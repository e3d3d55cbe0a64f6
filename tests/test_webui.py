"""The web pages in headless Chromium (Debian's `chromium`, driven by Playwright) against real
served modules: one `hub serving start` with clas_system, det_system (the generated fixture
detector: no real mainbody detector can be had offline) and rec_system (empty gallery, api_token
set). The pages come from that server when its runner registers the blueprint; otherwise a small
Flask app serves them here and forwards /predict/* to it, so the pages stay same-origin.
Screenshots land in build/test-artifacts/ (or $CLAS_TEST_ARTIFACTS) for the README."""
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import requests
from conftest import needs_system_package
from fixtures_detector import export_fixture_detector
from flask import Flask, Response, request
from werkzeug.serving import make_server

from clas_system.serving import webui
from harness.payloads import REPO, SHARED_IMAGES, image_b64
from harness.ports import free_port

ARTIFACTS = Path(os.environ.get("CLAS_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
TOKEN = "people-token"
MODULES = ["clas_system", "det_system", "rec_system"]
TIMEOUT_MS = 120_000


def test_modules_listing_and_static_files():
    client = webui.register(Flask("t"), served_modules=lambda: ["rec_system", "other"]).test_client()
    assert client.get("/ui/api/modules").get_json() == {"modules": [
        {"name": "rec_system", "kind": "recognize", "gallery": True},
        {"name": "other", "kind": None, "gallery": False}]}
    page = client.get("/ui/")
    assert page.status_code == 200 and b"Served modules" in page.data
    assert client.get("/ui/gallery.js").status_code == 200
    assert client.get("/ui/../__init__.py").status_code == 404


def test_pages_load_nothing_from_elsewhere():
    for path in webui.STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path.name
        assert "url(http" not in text and "@import" not in text, path.name


@pytest.fixture(scope="module")
def chromium():
    needs_system_package("chromium", lambda: shutil.which("chromium") is not None)
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def hub_server(server_factory, tmp_path_factory):
    detector_dir = tmp_path_factory.mktemp("webui_detector")
    export_fixture_detector(detector_dir)
    server = server_factory(modules={
        "clas_system": {},
        "det_system": {"model_dir": str(detector_dir)},
        "rec_system": {"index_dir": str(tmp_path_factory.mktemp("webui_rec") / "gallery"), "api_token": TOKEN,
                       "curation": {"review_max": 20}},
    })
    # Models load on first use: warm them so the pages answer within the browser's waits.
    warm = {"images": [image_b64("textline/textline_orientation_test_0_0.png")]}
    for module, extra in (("clas_system", {}), ("det_system", {}), ("rec_system", {"gallery": "search", "k": 1})):
        body = server.post(module, {**warm, **extra}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert body["status"] == "000", body
    return server


def forwarding_app(hub_url):
    """The blueprint plus /predict/* forwarded to the hub server (headers and status kept)."""
    app = webui.register(Flask("webui_test"), served_modules=lambda: MODULES)

    @app.post("/predict/<module>")
    def predict(module):
        headers = {k: v for k, v in request.headers.items() if k in ("Content-Type", "Authorization")}
        answer = requests.post(f"{hub_url}/predict/{module}", data=request.get_data(), headers=headers, timeout=120)
        return Response(answer.content, status=answer.status_code, content_type=answer.headers.get("Content-Type"))

    return app


@pytest.fixture(scope="module")
def ui_url(hub_server):
    """The hub server itself once its runner serves the pages, else the forwarding app."""
    if requests.get(f"{hub_server.url}/ui/api/modules", timeout=30).status_code == 200:
        yield hub_server.url
        return
    server = make_server("127.0.0.1", free_port(), forwarding_app(hub_server.url), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("dialog", lambda dialog: dialog.accept())  # "remove label?" confirmations
    yield page
    context.close()


def open_page(page, url):
    """Go to a page and wait until its script has set up its inputs."""
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached")


def screenshot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webui_{name}.png"), full_page=True)


def test_index_lists_the_served_modules(page, ui_url):
    page.goto(f"{ui_url}/ui/")
    page.wait_for_selector("#modules a")
    names = page.locator("#modules .name").all_inner_texts()
    assert names == MODULES
    assert page.locator("#modules a", has_text="gallery manager").count() == 1
    screenshot(page, "index")


def test_classification_page_shows_the_right_label(page, ui_url):
    open_page(page, f"{ui_url}/ui/predict.html?module=clas_system")
    page.fill("#top-k", "2")
    page.set_input_files("#files", str(SHARED_IMAGES / "textline" / "textline_orientation_test_1_0.png"))
    page.wait_for_selector(".result.done")
    assert page.locator(".result .bar.best .label").inner_text() == "180"
    assert page.locator(".result .bar").count() == 2
    screenshot(page, "clas_system")


def test_detection_page_draws_boxes(page, ui_url):
    open_page(page, f"{ui_url}/ui/predict.html?module=det_system")
    page.fill("#threshold", "0.5")
    page.set_input_files("#files", str(SHARED_IMAGES / "misc" / "coco_000000570688.jpg"))
    page.wait_for_selector(".result.done")
    # The fixture detector's boxes scoring >= 0.5: 0.95 and 0.80 foreground, 0.60 logo.
    assert page.locator(".regions td.label").all_inner_texts() == ["foreground", "foreground", "logo"]
    screenshot(page, "det_system")


def test_gallery_add_recognise_remove(page, ui_url):
    open_page(page, f"{ui_url}/ui/gallery.html?module=rec_system")
    page.wait_for_selector("#token-dialog.open")  # api_token is set: the page asks for it
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    page.wait_for_selector("[data-stat=items] b")
    assert page.locator("[data-stat=items] b").inner_text() == "0"

    for label, path in (("优佳 youjia", "drink/youjia.jpeg"), ("莫斯利安", "drink/mosilian.jpeg")):
        page.fill("#add-label", label)
        page.set_input_files("#add-files", str(SHARED_IMAGES / path))
        page.click("#add")
        page.wait_for_selector(f"tr[data-label='{label}']")
    assert page.locator("#labels td.label").all_inner_texts() == ["优佳 youjia", "莫斯利安"]
    assert page.locator("[data-stat=items] b").inner_text() == "2"
    page.set_input_files("#search-file", str(SHARED_IMAGES / "drink" / "youjia.jpeg"))
    page.wait_for_selector("#hits tr[data-id]")
    assert page.locator("#hits td.label").first.inner_text() == "优佳 youjia"
    screenshot(page, "gallery")

    open_page(page, f"{ui_url}/ui/predict.html?module=rec_system")  # the token is remembered
    page.set_input_files("#files", str(SHARED_IMAGES / "drink" / "youjia.jpeg"))
    page.wait_for_selector(".result.done")
    assert page.locator(".regions td.label").first.inner_text() == "优佳 youjia"
    screenshot(page, "rec_system")

    open_page(page, f"{ui_url}/ui/gallery.html?module=rec_system")
    page.wait_for_selector("tr[data-label='优佳 youjia']")
    page.click("tr[data-label='优佳 youjia'] button")
    page.wait_for_selector("tr[data-label='优佳 youjia']", state="detached")
    assert page.locator("#labels td.label").all_inner_texts() == ["莫斯利安"]

    open_page(page, f"{ui_url}/ui/predict.html?module=rec_system")
    page.set_input_files("#files", str(SHARED_IMAGES / "drink" / "youjia.jpeg"))
    page.wait_for_selector(".result.done")
    assert "优佳 youjia" not in page.locator(".result").inner_text()


def images_decoded(page, selector):
    """How many images match, and whether every one has loaded and decoded to real pixels."""
    return page.evaluate(f"""Array.from(document.querySelectorAll({selector!r}))
        .map(img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0)""")


def test_gallery_items_thumbnails_relabel_remove_and_review_queue(page, ui_url, hub_server):
    import cv2
    import numpy as np
    headers = {"Authorization": f"Bearer {TOKEN}"}
    [added] = hub_server.post("rec_system", {"gallery": "add", "images": [image_b64("drink/nongfu_spring.jpeg")],
                                             "labels": ["农夫山泉"]}, headers=headers)["results"]["ids"]
    unknown = {"images": [image_b64("imagenet/ILSVRC2012_val_00006666.JPEG")]}
    assert hub_server.post("rec_system", unknown, headers=headers)["status"] == "000"  # its regions: kept for review
    open_page(page, f"{ui_url}/ui/gallery.html?module=rec_system")
    page.wait_for_selector("#token-dialog.open")
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    page.wait_for_selector(f"#items .card[data-id='{added}'] img")
    decoded = images_decoded(page, "#items .card img")
    assert decoded and all(decoded)
    assert "农夫山泉" in page.locator("#items .card .label").all_inner_texts()

    card = page.locator(f"#items .card[data-id='{added}']")
    card.locator("input").fill("农夫山泉 550ml")
    card.locator("button.relabel").click()
    page.wait_for_selector(f"#items .card[data-id='{added}'] .label:text-is('农夫山泉 550ml')")
    page.wait_for_selector("#review .card img")
    assert all(images_decoded(page, "#review .card img"))
    reviewed = page.locator("#review .card").count()
    assert "kept for review" in page.locator("#review-state").inner_text()
    first = page.locator("#review .card").first
    first.locator("input").fill("蛇 snake")
    first.locator("button.enrol").click()
    page.wait_for_selector("#items .card .label:text-is('蛇 snake')")
    assert page.locator("#review .card").count() == reviewed - 1
    page.fill("#items-label", "蛇 snake")
    page.dispatch_event("#items-label", "change")
    page.wait_for_function("document.querySelectorAll('#items .card').length === 1")
    assert all(images_decoded(page, "#items .card img"))
    screenshot(page, "gallery_items")
    shot = cv2.imread(str(ARTIFACTS / "webui_gallery_items.png"))
    assert shot is not None and shot.shape[1] == 1200 and float(np.std(shot)) > 10

    enrolled = page.locator("#items .card").first.get_attribute("data-id")
    page.locator("#items .card button.remove").first.click()
    page.wait_for_selector(f"#items .card[data-id='{enrolled}']", state="detached")
    if reviewed > 1:
        page.locator("#review .card button.dismiss").first.click()
        page.wait_for_function(f"document.querySelectorAll('#review .card').length === {reviewed - 2}")
