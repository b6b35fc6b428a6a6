"""FastAPI application factory. Nothing happens at import time: create_app(settings) builds everything."""

from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from coldtrace import __version__
from coldtrace.settings import Settings
from coldtrace.wiring import Services, build_services

from .errors import install_error_handlers
from .routers import ROUTER_MODULES

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    if services is None:
        if settings is None:
            raise ValueError("create_app needs settings or services")
        services = build_services(settings)
    app = FastAPI(
        title="ColdTrace",
        version=__version__,
        description="Temperature and calibration monitoring for clinical-trial supply chains.",
        docs_url=None,  # /docs and /redoc: api/routers/docs.py, from the vendored bundles (no CDN)
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.services = services
    # X-Forwarded-For / -Proto only from api.trusted_proxies (the client address feeds the sign-in throttle,
    # the scheme the cookie's Secure flag); uvicorn's own proxy handling is off (cli._start_api)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(services.settings.api.trusted_proxies))
    install_error_handlers(app)
    for name in ROUTER_MODULES:
        module = importlib.import_module(f"api.routers.{name}")
        app.include_router(module.router)
        if hasattr(module, "setup"):  # e.g. static files of the QA pages
            module.setup(app)
    return app
