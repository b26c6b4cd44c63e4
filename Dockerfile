# syntax=docker/dockerfile:1
# The csp-orchestrator image: the worker, the HTTP API, the codec server and the `csp` CLI.
# Two stages: the build stage makes a virtualenv with the project and its dependencies; the
# runtime stage copies only that virtualenv and the entry points, and runs as a user without
# privileges. .dockerignore keeps .data/ (the development secrets key), .venv/ and .git/ out of
# the build context, so nothing of a developer's machine can end up in the image.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The package sources only (no tests, benchmarks, docs): see .dockerignore.
COPY pyproject.toml README.md ./
COPY worker.py starter.py devstack.py ./
COPY activities ./activities
COPY api ./api
COPY cli ./cli
COPY http_api ./http_api
COPY csp_core ./csp_core
COPY sandbox ./sandbox
COPY temporalutil ./temporalutil
COPY workflows ./workflows
# A regular (not editable) install: the runtime stage needs nothing from /src.
RUN pip install .

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_JSON=true
RUN groupadd --system --gid 10001 csp \
    && useradd --system --uid 10001 --gid csp --home-dir /app --no-create-home csp
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# worker.py is the worker's entry point (`python worker.py`); `csp` is on PATH.
COPY --chown=root:root worker.py starter.py ./
USER 10001:10001
EXPOSE 9464 8000 8081
CMD ["python", "worker.py"]
