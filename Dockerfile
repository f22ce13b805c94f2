# The API (default command), the worker (`arq worker.Settings`), migrations (`alembic upgrade
# head`) and `ordersctl`, all from one image. See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system app \
    && useradd --system --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, in their own layer, so that a change to the code alone does not
# reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && python -c "import api.main, worker, shared.settings"

USER app
EXPOSE 8000
# On SIGTERM uvicorn answers the requests in flight for up to this long before it exits;
# docker-compose.yml gives the API a longer stop_grace_period than this.
ENV UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=10
# alembic.ini, alembic/ and worker.Settings are found relative to /app, the working directory.
# The server settings docs/performance.md measures (bench/stack.py): uvloop and httptools, no
# access log (X-Process-Time, X-Request-ID and the slow-request log replace it), keep-alive 5 s.
# Processes per container: WEB_CONCURRENCY (one per core the container gets).
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", \
     "--http", "httptools", "--no-access-log", "--timeout-keep-alive", "5"]
