"""The FastAPI application factory."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.routes import datasets, forecasts, health, jobs, laws, runs
from app.settings import Settings, get_settings

DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"

DESCRIPTION = """
perflaw predicts the HR@K and NDCG@K a SASRec-style sequential recommender will reach at a
planned size, from the Performance Law (Shen et al., arXiv 2412.00430) and the Approximate
Entropy of the interaction data. Upload a dataset, read its data-quality profile, fit laws on
measured runs, and ask for predictions, plans and pass/fail checks.

Errors are RFC 9457 problem details. Send `Authorization: Bearer <key>` unless the server
runs in single-user mode on a loopback address.
"""


def create_app(settings: Settings | None = None, *, allow_anonymous: bool = True) -> FastAPI:
    """Build the application; allow_anonymous is False when the server listens beyond loopback."""
    settings = settings or get_settings()
    app = FastAPI(
        title="perflaw",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.allow_anonymous = allow_anonymous
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_json_body_kb * 1024,
        max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
        upload_paths=("/v1/datasets",),
    )
    for router in (health.router, datasets.router, runs.router, laws.router, forecasts.router, jobs.router):
        app.include_router(router)
    _add_docs_pages(app)
    return app


def _add_docs_pages(app: FastAPI) -> None:
    """Serve Swagger UI and ReDoc from packaged assets, so the pages work with no internet."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="perflaw API",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title="perflaw API",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
