"""Debian packages some tests need (a CJK font, headless Chromium), installed when missing.

Tests run as root on the project's machines; elsewhere a missing package skips the test with
the apt-get line that would install it.
"""
import os
import shutil
import subprocess

import pytest


def ensure_debian_packages(*packages, present):
    """Install `packages` with apt-get unless `present()` is already true; skip when impossible."""
    if present():
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"needs {' '.join(packages)}: {' '.join(command)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    installed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        installed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if installed.returncode != 0 or not present():
        pytest.fail(f"{' '.join(command)} failed:\n{installed.stdout[-2000:]}{installed.stderr[-2000:]}")
