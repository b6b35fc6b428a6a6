# ColdTrace: one image for every process (`coldtrace collector | api | gateway | sim | run`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY coldtrace ./coldtrace
COPY collector ./collector
COPY gateway ./gateway
COPY api ./api
COPY firmware_sim ./firmware_sim
RUN pip install . \
 && useradd --system --uid 10001 --user-group --groups dialout --home-dir /var/lib/coldtrace --create-home coldtrace \
 && mkdir -p /var/lib/coldtrace-gateway && chown coldtrace:coldtrace /var/lib/coldtrace-gateway \
 && rm -rf /src

# A non-root user; data (SQLite metadata, gateway spool) lives in volumes owned by it. It is in `dialout`
# (gid 20, as on Debian/Ubuntu hosts) so that the gateway may open a serial device passed into the container.
USER coldtrace
WORKDIR /var/lib/coldtrace
ENV COLDTRACE_DATA_DIR=/var/lib/coldtrace
VOLUME ["/var/lib/coldtrace"]
EXPOSE 8080

ENTRYPOINT ["coldtrace"]
CMD ["run"]
