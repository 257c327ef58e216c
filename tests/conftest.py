"""Session-wide guard: no test opens a network connection. Connecting a socket to anything but
the loopback interface, or resolving a host name other than localhost, raises
``NetworkBlocked`` (an OSError, which is what a machine without network gives too). Tests marked
``network`` (deselected by default, see pyproject's addopts) are left alone.

``hub_cache``: an empty Hugging Face cache (see hub_helpers.write_hub_cache), offline, for one test."""

from __future__ import annotations

import ipaddress
import socket

import pytest

LOCAL_HOSTS = {None, "", "localhost", "localhost.localdomain"}


class NetworkBlocked(OSError):
    """A test tried to reach the network."""


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _address_host(address):
    return address[0] if isinstance(address, tuple) and address else None


@pytest.fixture(autouse=True)
def _no_network(request, monkeypatch):
    if request.node.get_closest_marker("network"):
        yield
        return
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(_address_host(address)):
            raise NetworkBlocked(f"test tried to connect to {address!r}: tests must not use the network")

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            raise NetworkBlocked(f"test tried to resolve {host!r}: tests must not use the network")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hub cache that huggingface_hub uses for this test, offline (as with
    HF_HUB_CACHE=... HF_HUB_OFFLINE=1; its constants are read at import, so they are set too)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache
