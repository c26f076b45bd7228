"""deploy/nginx.conf on a real nginx in front of a real app: it stores what the app answers
for the parameters it reads, and nothing else (issue 25: 40 requests of
/calendar.ics?junk=N filled 2.2 GB of cache and pushed real entries out).

The file is the one deployed, with only what cannot run here replaced: the compose network's
upstreams and resolver, the container's paths, the port. Debian's nginx (`make test`
installs nginx-light); without it these tests skip, except in CI."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from aggregator.web import make_app
from tests.conftest import NOW, ROOT
from tests.test_web import demo  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("database")

CONF = ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        message = "nginx is not installed: Debian package nginx-light"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_conf(folder: Path, app_port: int, port: int) -> str:
    """deploy/nginx.conf as it runs here: one upstream (the test's app), no Docker DNS, the
    paths in `folder`, one worker."""
    text = CONF.read_text()
    replaced = [
        # as root the workers would be `nobody`, who cannot enter the test's folders
        (r"(?m)^user .*;\n", "user root;\n" if os.geteuid() == 0 else ""),
        (r"(?m)^worker_processes .*;", "worker_processes 1;"),
        (r"(?m)^error_log .*;", f"error_log {folder}/error.log notice;"),
        (r"(?m)^pid .*;", f"pid {folder}/nginx.pid;"),
        (r"access_log /var/log/nginx/access.log", f"access_log {folder}/access.log"),
        (r"(?m)^\s*resolver .*;\n", ""),
        (r"(?m)^\s*server web1:8080 .*;", f"        server 127.0.0.1:{app_port};"),
        (r"(?m)^\s*server web2:8080 .*;\n", ""),
        (r"/var/cache/nginx/aggregator", f"{folder}/cache"),
        (r"listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;"),
        (
            r"(?m)^http \{",
            "http {\n"
            + "".join(
                f"    {kind}_temp_path {folder}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
        ),
    ]
    for pattern, replacement in replaced:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"deploy/nginx.conf no longer has {pattern!r}: update this test"
    return text


@pytest.fixture
async def proxy(tmp_path, demo):  # noqa: F811
    """The demo app behind deploy/nginx.conf: the proxy's base URL, its cache folder and its
    access log."""
    binary = nginx_binary()
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(local_conf(folder, server.port, port))
    checked = subprocess.run(
        [binary, "-t", "-p", str(folder), "-c", str(conf)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    running = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(200):  # nginx binds within milliseconds; a bounded wait
                try:
                    async with client.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    assert running.poll() is None, running.stderr.read().decode()
                    await asyncio.sleep(0.02)
        yield base, folder / "cache", folder / "access.log"
    finally:
        running.terminate()
        running.wait(timeout=10)
        await server.close()


def cache_entries(cache: Path) -> int:
    return sum(1 for path in cache.rglob("*") if path.is_file())


def verdicts(log: Path) -> list[str]:
    """Each request's cache verdict, in the order of the access log."""
    return re.findall(r"cache=(\S+)", log.read_text())


async def test_junk_parameters_neither_fill_the_proxys_cache_nor_push_out_an_entry(proxy):
    base, cache, log = proxy
    async with aiohttp.ClientSession() as client:
        for _ in range(2):
            async with client.get(f"{base}/calendar.ics") as response:
                plain = await response.read()
        stored = cache_entries(cache)
        assert stored >= 1
        assert verdicts(log)[-2:] == ["MISS", "HIT"]
        for n in range(40):
            async with client.get(f"{base}/calendar.ics", params={"junk": str(n)}) as response:
                assert response.status == 200
                assert await response.read() == plain  # the app ignores it: the same bytes
        assert cache_entries(cache) == stored
        assert verdicts(log)[-40:] == ["BYPASS"] * 40
        async with client.get(f"{base}/calendar.ics") as response:
            assert await response.read() == plain
        assert verdicts(log)[-1] == "HIT"


async def test_a_window_the_app_reads_is_stored_by_the_proxy(proxy):
    base, cache, log = proxy
    async with aiohttp.ClientSession() as client:
        for _ in range(2):
            async with client.get(f"{base}/calendar.ics", params={"days": "30"}) as response:
                assert response.status == 200
        assert verdicts(log)[-2:] == ["MISS", "HIT"]
        async with client.get(f"{base}/calendar.ics", params={"days": "30", "x": "1"}) as got:
            assert got.status == 200
        assert verdicts(log)[-1] == "BYPASS"
