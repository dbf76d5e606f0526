"""/docs (Swagger UI) and /redoc in a real headless Chromium, with no network beyond loopback.

The app runs under uvicorn on a free loopback port in this process. Chromium loads each
page with name resolution mapped to nothing but 127.0.0.1, so an asset fetched from the
internet would be missing and the page would not render. `--dump-dom` prints the DOM after
the scripts ran, and `--virtual-time-budget` gives them time to finish. The test checks that every
operation of /openapi.json was rendered, and that the app served the page's assets itself.
Chromium comes from Debian's `chromium` package (.ci/run installs it); without it the tests
are skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from app.main import DOCS_ASSETS_URL, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIRTUAL_TIME_BUDGET_MS = 20_000
CHROMIUM_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingApp:
    """ASGI wrapper that records the path of every HTTP request the app receives."""

    def __init__(self, app) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory) -> Iterator[tuple[str, RecordingApp]]:
    """Serve the app on a free loopback port from a background thread."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); the docs pages cannot be rendered")
    app = RecordingApp(create_app())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield base_url, app
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def openapi(docs_server) -> dict:
    base_url, _ = docs_server
    return httpx.get(f"{base_url}/openapi.json", timeout=10).json()


def render_dom(url: str, profile_dir) -> str:
    """Load url in headless Chromium with no network but loopback, and return the rendered DOM."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps",
        f"--user-data-dir={profile_dir}",
        # Every host name but the loopback address resolves to nothing.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--dump-dom", url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def operations(openapi: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, methods in openapi["paths"].items()
        for method, operation in methods.items()
    ]


def test_swagger_ui_renders_every_operation(docs_server, openapi, tmp_path):
    base_url, app = docs_server
    app.paths.clear()

    dom = render_dom(f"{base_url}/docs", tmp_path / "profile")

    missing = [f"{method} {path}" for method, path, _ in operations(openapi)
               if f'data-path="{path}"' not in dom]
    assert missing == []
    assert 'class="swagger-ui' in dom
    assert "/openapi.json" in app.paths
    assert f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js" in app.paths
    assert f"{DOCS_ASSETS_URL}/swagger-ui.css" in app.paths


def test_redoc_renders_every_operation(docs_server, openapi, tmp_path):
    base_url, app = docs_server
    app.paths.clear()

    dom = render_dom(f"{base_url}/redoc", tmp_path / "profile")

    missing = [f"{method} {path}" for method, path, operation in operations(openapi)
               if f"operation/{operation['operationId']}" not in dom]
    assert missing == []
    assert "/openapi.json" in app.paths
    assert f"{DOCS_ASSETS_URL}/redoc.standalone.js" in app.paths


def test_docs_pages_reference_only_local_assets(docs_server):
    base_url, _ = docs_server

    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{base_url}{page}", timeout=10).text

        assert "https://" not in html, page
        assert "http://" not in html, page
        assert DOCS_ASSETS_URL in html, page
