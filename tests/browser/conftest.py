"""Browser tests: a real ASGI server (uvicorn: HTTP + websockets) on the test database, driven by Chromium.

The server is a subprocess pointed at this test's database and Redis channel-layer prefix, so a write
made here (a service call, a webhook POST) reaches the page through the same path as in production.
Tests that use it are ``transaction=True``: the server only sees committed rows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Playwright's sync API drives its own event loop on this thread; Django's guard against ORM calls from
# async code would otherwise refuse the test's own (synchronous) database work between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving config.asgi on a fixed port; ``restart()`` keeps the port (pages reconnect to it)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "PYTEST_XDIST_WORKER": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "DB_CONN_MAX_AGE": "0",
            "LOG_LEVEL": "WARNING",
        }
        self.log = ARTIFACTS / f"server-{self.env['PYTEST_XDIST_WORKER']}.log"

    def start(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(self.port), "--lifespan", "off", "--timeout-graceful-shutdown", "1"],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log}")
            try:
                # The first request sets Django up and connects to the database: slow on a busy machine.
                if requests.get(self.url + "/accounts/login/", timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture
def asgi_server(transactional_db: Any) -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# Module scope, not session: Playwright's sync API keeps an event loop running on this thread while it
# lives, and async_to_sync (websocket consumer tests in the same xdist worker) refuses to run beside it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def signed_in_context(browser: Any, server: LiveServer, user: Any, **options: Any) -> Any:
    """A browser context carrying a session for ``user`` (made here, in the shared database)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=server.url, **options)
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
          "url": server.url}]
    )  # fmt: skip
    context.set_default_timeout(8000)
    return context


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def wait_connected(page: Any) -> None:
    page.wait_for_selector('#inbox[data-connected="true"]', state="attached")
