"""Every shipped hubmodules/*/config.json starts as it is, `hub serving start -c`: PaddleHub
users' usual way. The modules' entries go into one config (one server, only the port changed to
a free one) and the server must get ready with each of them. Its cache is a temporary folder
that shares the derived models, so rec_system's default gallery is its own."""
import json
from pathlib import Path

import pytest
import requests

from harness.hub_server import HUB_MODULES, hub_env, launch_hub_server
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


def test_the_shipped_configs_start_as_they_are(hub_home, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(Path(cache_dir()) / "models", target_is_directory=True)
    server = launch_hub_server(hub_home, tmp_path, config=one_server_config(CONFIGS),
                               env=hub_env(hub_home, **{CACHE_ENV: str(cache)}))
    try:
        wait_ready(server, timeout=240)
        ready = requests.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["modules"]) == {path.parent.name for path in CONFIGS}
        assert (cache / "galleries" / "rec_system").is_dir()
    finally:
        server.stop()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_a_config_holds_no_placeholder_paths(path):
    text = path.read_text(encoding="utf-8")
    assert "/path/to" not in text, f"{path}: a placeholder path; leave model_dir to params.py's default"
