"""Loopback addresses: a free port to start a server on, and whether a URL stays on this machine."""
import socket
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_loopback(url):
    try:
        return urlsplit(url).hostname in LOOPBACK
    except ValueError:
        return False
