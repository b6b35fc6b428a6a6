"""Routers of the API, one module per resource. Add a module name here to mount its ``router``."""

ROUTER_MODULES: list[str] = [
    "health",
    "devices",
    "alerts",
    "alerts_lifecycle",
    "excursions",
    "quarantine",
    "auth",
    "ingest",
    "shipments",
    "audit",
    "calibration",
    "webhooks",
    "profiles",  # profiles as data, assignment to devices (issue 3)
    "summary",  # per-device summary over a time range (issue 3)
    "docs",  # /docs (Swagger UI) and /redoc from the vendored bundles (issue 16)
    "alarm_health",  # alarm system health: rate, floods, standing, chattering, top 10 (issue 13)
    "pages",  # the QA pages (HTML/JS under api/static), last: it also serves / and /static
]
