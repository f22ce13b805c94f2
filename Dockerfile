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
# reinstall them: the runtime lock, the versions (and hashes) the tests ran with (`make lock`).
COPY requirements-runtime.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock

COPY . .
RUN pip install --no-deps . \
    && pip check \
    && python -c "import api.main, worker, kit.settings"

USER app
EXPOSE 8000
# alembic.ini, alembic/ and worker.Settings are found relative to /app, the working directory.
# The production server: Granian with the flags api/server.py explains one by one (a test keeps
# this CMD equal to them). On SIGTERM it answers the requests in flight for up to 10 s, then kills
# its workers; docker-compose.yml gives the API a longer stop_grace_period than that.
# Worker processes per container: GRANIAN_WORKERS (one per core the container gets).
CMD ["granian", "--interface=asgi", "--loop=uvloop", "--http=1", "--no-ws", "--no-access-log", \
     "--backlog=2048", "--http1-header-read-timeout=5000", "--workers-kill-timeout=10", \
     "--respawn-failed-workers", "--host=0.0.0.0", "--port=8000", "api.main:app"]
