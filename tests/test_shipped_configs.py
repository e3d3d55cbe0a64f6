"""Every shipped hubmodules/*/config.json starts as it is, `hub serving start -c`: PaddleHub
users' usual way. The modules' entries go into one config (one server, only the port changed to
a free one) and the server must get ready with each of them. Its cache is a temporary folder
that shares the derived models, so rec_system's default gallery is its own.

Then every example of README.md and docs/ that talks to a server runs against it as written
(Python blocks that call the client or post with requests, shell blocks of curl commands), with
only the address changed and the image files they name made from the shared images.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from harness.hub_server import HUB_MODULES, hub_env, launch_hub_server
from harness.payloads import REPO, SHARED_IMAGES
from params.common import CACHE_ENV, cache_dir

from conftest import wait_ready

CONFIGS = sorted(HUB_MODULES.glob("*/config.json"))
SERVER_KEYS = {"modules_info", "port", "use_multiprocess", "workers"}


def read_config(path):
    config = json.loads(path.read_text(encoding="utf-8"))
    assert set(config) <= SERVER_KEYS, f"{path}: keys hub serving does not read: {set(config) - SERVER_KEYS}"
    assert set(config["modules_info"]) == {path.parent.name}, f"{path}: serves other modules than its folder's"
    return config


def one_server_config(paths):
    """The shipped configs' modules in one config; they must agree on how the server runs."""
    configs = [read_config(path) for path in paths]
    modes = {config.get("use_multiprocess", False) for config in configs}
    assert len(modes) == 1, f"the shipped configs disagree on use_multiprocess: {modes}"
    modules = {name: entry for config in configs for name, entry in config["modules_info"].items()}
    return {**configs[0], "modules_info": modules}


def test_every_module_has_a_config():
    assert [path.parent.name for path in CONFIGS] == sorted(
        d.name for d in HUB_MODULES.iterdir() if (d / "module.py").exists())


@pytest.fixture(scope="module")
def shipped_server(hub_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shipped")
    cache = folder / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(Path(cache_dir()) / "models", target_is_directory=True)
    server = launch_hub_server(hub_home, folder, config=one_server_config(CONFIGS),
                               env=hub_env(hub_home, **{CACHE_ENV: str(cache)}))
    try:
        yield wait_ready(server, timeout=240), cache
    finally:
        server.stop()


def test_the_shipped_configs_start_as_they_are(shipped_server):
    server, cache = shipped_server
    ready = requests.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["modules"]) == {path.parent.name for path in CONFIGS}
    assert (cache / "galleries" / "rec_system").is_dir()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_a_config_holds_no_placeholder_paths(path):
    text = path.read_text(encoding="utf-8")
    assert "/path/to" not in text, f"{path}: a placeholder path; leave model_dir to params.py's default"


DOCUMENTED_ADDRESS = "127.0.0.1:8866"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# The files the examples name, made from the shared images ("broken.jpg" is meant to be refused).
EXAMPLE_FILES = {"line.png": "textline/textline_orientation_test_0_0.png", "photo.jpg": "imagenet/ILSVRC2012_val_00000010.jpeg",
                 "a.jpg": "imagenet/ILSVRC2012_val_00006666.JPEG", "shelf.jpg": "misc/wangzai.jpg",
                 "query.jpg": "drink/youjia.jpeg", "cola1.jpg": "drink/mosilian.jpeg"}


def talks_to_a_server(language, code):
    if language == "python":
        return "Client(" in code or "requests.post(" in code
    lines = code.replace("\\\n", " ").splitlines()
    commands = [line for line in lines if line.strip() and not line.startswith("#")]
    return language == "bash" and bool(commands) and all(line.startswith("curl ") for line in commands)


def server_examples():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            language, code = match.groups()
            if talks_to_a_server(language, code):
                line = text.count("\n", 0, match.start()) + 1
                yield pytest.param(language, code, id=f"{page.name}:{line}")


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    for name, source in EXAMPLE_FILES.items():
        shutil.copyfile(SHARED_IMAGES / source, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    return folder


@pytest.mark.parametrize("language, code", list(server_examples()))
def test_the_documented_examples_run(shipped_server, example_folder, monkeypatch, language, code):
    server, _ = shipped_server
    code = code.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{server.port}")
    monkeypatch.chdir(example_folder)
    if language == "python":
        exec(compile(code, "<example>", "exec"), {"url": server.url})
        return
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", code.replace("curl -s ", "curl -sf ")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]), done.stdout
