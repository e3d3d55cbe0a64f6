"""Web pages for the served modules, on the server's own port: `GET /ui/`.

Plain HTML, CSS and JavaScript shipped in this package (no CDN, no build step, works offline).
The pages call the modules' own HTTP API (`POST /predict/<module>`) from the browser, so they
need nothing on the server but these files and the list of served modules:

- /ui/ lists the served modules;
- /ui/predict.html?module=clas_system: drop images, see top-k bars;
- /ui/predict.html?module=det_system: boxes drawn on the image;
- /ui/predict.html?module=rec_system: boxes, recognised labels and scores;
- /ui/gallery.html?module=rec_system: the gallery manager (labels and counts, search by image,
  add many images under a label, remove an item or a whole label, save).

With `serving.api_token` set the pages ask for the token once and send it as
`Authorization: Bearer <token>` (kept in the browser's localStorage).

    from clas_system.serving import webui
    webui.register(app)          # app: PaddleHub's Flask app, before it serves
"""
from pathlib import Path

from flask import Blueprint, jsonify, send_from_directory

STATIC_DIR = Path(__file__).with_name("static")
# Page kind of each module this package serves; other modules are listed without a page.
MODULE_KINDS = {"clas_system": "classify", "det_system": "detect", "rec_system": "recognize"}


def paddlehub_served_modules():
    """Names of the modules `hub serving start` serves in this process."""
    from paddlehub.serving.model_service.base_model_service import v2_module_info

    return list(v2_module_info.modules)


def module_entries(names):
    """Module names -> [{"name", "kind", "gallery"}] for the index page, in the given order."""
    return [{"name": name, "kind": MODULE_KINDS.get(name), "gallery": MODULE_KINDS.get(name) == "recognize"}
            for name in names]


def create_blueprint(served_modules=paddlehub_served_modules):
    """The /ui blueprint; served_modules() -> the names to list (PaddleHub's by default)."""
    ui = Blueprint("clas_system_webui", __name__, url_prefix="/ui")

    @ui.get("/")
    def index():
        return send_from_directory(STATIC_DIR, "index.html")

    @ui.get("/api/modules")
    def modules():
        return jsonify({"modules": module_entries(served_modules())})

    @ui.get("/<path:filename>")
    def static_file(filename):
        return send_from_directory(STATIC_DIR, filename)

    return ui


def register(app, served_modules=paddlehub_served_modules):
    """Serve the pages from `app` (a Flask app) under /ui/."""
    app.register_blueprint(create_blueprint(served_modules))
    return app
