# syntax=docker/dockerfile:1
# One image for every role:
#   docker run IMAGE                      -> shopmind serve (API on :8000; the default CMD below)
#   docker run IMAGE worker               -> shopmind worker (scheduled and on-demand rebuilds)
#   docker run IMAGE migrate              -> shopmind migrate (schema to head, then exit)
#   docker run IMAGE import /data/ev.csv  -> any other `shopmind` command
# Configuration is SHOPMIND_* environment variables (see docker-compose.yml and the README).

# --- build: the project as a wheel (code only; rebuilt whenever the code changes) -------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY migrations ./migrations
COPY app ./app
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHOPMIND_DATA_DIR=/var/lib/shopmind

RUN groupadd --system --gid 10001 shopmind \
    && useradd --system --uid 10001 --gid shopmind --home-dir /var/lib/shopmind --create-home \
        --shell /usr/sbin/nologin shopmind

# Dependencies from pyproject.toml alone, in their own layer: code changes do not reinstall them.
# EXTRAS adds optional groups, comma-separated (docker-compose.scale.yml builds with "dask").
ARG EXTRAS=""
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import os, tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; extras = [e for e in os.environ.get('EXTRAS', '').split(',') if e]; print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/pyproject.toml

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels

USER 10001:10001
WORKDIR /var/lib/shopmind
EXPOSE 8000

# Liveness of the API role (the worker and migrate roles disable it in docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["shopmind"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-demo", "--no-worker"]
