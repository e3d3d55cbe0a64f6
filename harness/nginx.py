"""nginx (Debian's) on loopback in front of replicas, running a site config as docs/ ship it.

    proc = start_nginx(workdir, site_config, listen_port, {8866: port_a, 8867: port_b})
    access_log_lines(workdir)   # "msec upstream_addr status" per request, the tries' upstreams
    stop_nginx(proc)

The site file is used as it is, its `listen` port and upstream ports replaced; it is wrapped in
a main config of its own (pid, logs and temp folders in workdir, in the foreground).
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

import requests

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_installed():
    return os.access(NGINX, os.X_OK)


def site_with_ports(site_text, listen_port, upstream_ports):
    """The site config with `listen 8080` and each 127.0.0.1:<documented port> replaced."""
    text = site_text.replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")
    for documented, actual in upstream_ports.items():
        text = text.replace(f"127.0.0.1:{documented} ", f"127.0.0.1:{actual} ")
    return text


def main_config(workdir, site_path):
    workdir = Path(workdir)
    temps = "\n".join(f"    {name}_temp_path {workdir / (name + '_temp')};" for name in TEMP_FOLDERS)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers write the temp folders above
    return (f"{user}worker_processes 1;\npid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} warn;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{\n    log_format tries '$msec $upstream_addr $status';\n"
            f"    access_log {workdir / 'access.log'} tries;\n{temps}\n    include {site_path};\n}}\n")


def start_nginx(workdir, site_config, listen_port, upstream_ports, timeout_s=10):
    """nginx serving the site config (a path) on 127.0.0.1:listen_port; answering once this returns."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    site_path = workdir / "site.conf"
    site_path.write_text(site_with_ports(Path(site_config).read_text(), listen_port, upstream_ports))
    config_path = workdir / "nginx.conf"
    config_path.write_text(main_config(workdir, site_path))
    checked = subprocess.run([NGINX, "-t", "-p", str(workdir), "-c", str(config_path)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx refused {config_path}:\n{checked.stderr}")
    with open(workdir / "stderr.log", "w") as stderr:
        proc = subprocess.Popen([NGINX, "-p", str(workdir), "-c", str(config_path), "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{listen_port}/health", timeout=2)
            return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    stop_nginx(proc)
    raise RuntimeError(f"nginx did not answer on {listen_port}: {(workdir / 'error.log').read_text()[-2000:]}")


def stop_nginx(proc):
    """A quick stop (SIGTERM to the master), then wait."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def access_log_lines(workdir):
    """(time, [upstreams tried], status) per answered request."""
    lines = []
    for row in (Path(workdir) / "access.log").read_text().splitlines():
        at, rest = row.split(" ", 1)
        upstreams, status = rest.rsplit(" ", 1)
        lines.append((float(at), [u.strip() for u in upstreams.split(",")], status))
    return lines
