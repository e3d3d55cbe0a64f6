"""Real servers for end-to-end tests (harness.hub_server: `hub serving start` in its own process
group on a free loopback port, HUB_HOME in a temporary folder), the Milvus server, and the
markers that sort the suite:

    e2e      starts `hub serving start` (every test using hub_home, server_factory or a server)
    browser  drives headless Chromium
    milvus   needs a Milvus server ($CLAS_MILVUS_URI, else one started here)
    slow     long on its own (kill -9 rounds, PaddleClas's reference runs)

`make test-fast` runs the rest: `pytest -m "not (e2e or browser or milvus or slow)"`.
"""
import os

import pytest

from harness.hub_server import HubServerError, install_hub_modules, launch_hub_server
from harness.milvus_server import start_milvus_server, stop_milvus_server
from harness.ports import free_port

MARKERS = {
    "e2e": "starts `hub serving start` (a real server in a subprocess)",
    "browser": "drives headless Chromium (Debian's chromium, `make system-packages`)",
    "milvus": "needs a Milvus server ($CLAS_MILVUS_URI, else one is started)",
    "slow": "long on its own: kill -9 rounds, PaddleClas's reference runs",
}
FIXTURE_MARKERS = {"hub_home": "e2e", "chromium": "browser", "milvus_uri": "milvus"}


def pytest_configure(config):
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in item.fixturenames:
                item.add_marker(marker)


def needs_system_package(package, present):
    """Skip unless a Debian package the test needs is there (`make system-packages` installs it)."""
    if not present():
        pytest.skip(f"needs the Debian package {package}: make system-packages (apt-get install {package})")


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory):
    """A PaddleHub home with every module under hubmodules/ installed, as `make serve` does."""
    home = tmp_path_factory.mktemp("hub_home")
    try:
        install_hub_modules(home)
    except HubServerError as err:
        pytest.fail(str(err))
    return home


def launch(hub_home, workdir, modules=None, command=None, use_multiprocess=False, workers=2):
    return launch_hub_server(hub_home, workdir, modules=modules, command=command,
                             use_multiprocess=use_multiprocess, workers=workers)


def wait_ready(server, timeout=120):
    """Until the server is ready; fails the test with the server's log if it exits first."""
    try:
        return server.wait_ready(timeout)
    except HubServerError as err:
        pytest.fail(str(err))


def run_to_exit(hub_home, workdir, modules, timeout=120):
    """A server that is expected to refuse to start: (exit code, log)."""
    server = launch(hub_home, workdir, modules)
    try:
        code = server.wait_exit(timeout)
    except HubServerError as err:
        pytest.fail(str(err))
    return code, server.log()


@pytest.fixture(scope="session")
def server_factory(hub_home, tmp_path_factory):
    """start(modules=..., command=..., use_multiprocess=...) -> HubServer; all stopped at the end."""
    started = []
    workdir = tmp_path_factory.mktemp("servers")

    def start(**kwargs):
        server = wait_ready(launch(hub_home, workdir, **kwargs))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory):
    """The address of a running Milvus (Lite standalone) server."""
    if os.environ.get("CLAS_MILVUS_URI"):
        yield os.environ["CLAS_MILVUS_URI"]
        return
    pytest.importorskip("pymilvus", reason="the milvus backend's extra is not installed: pip install '.[milvus]'")
    pytest.importorskip("milvus_lite", reason="the milvus backend's extra is not installed: pip install '.[milvus]'")
    folder = tmp_path_factory.mktemp("milvus")
    proc, uri = start_milvus_server(folder / "data", free_port(), folder / "server.log")
    yield uri
    stop_milvus_server(proc)
