# Conveyor: one image for the server and the workers.
#
#   docker build -t conveyor .
#   docker run -p 8000:8000 -e CONVEYOR_TOKENS=admin:... -v conveyor-data:/data conveyor
#   docker run conveyor conveyor worker --server http://server:8000     (CONVEYOR_TOKEN=...)
#
# The server listens on 0.0.0.0 in the container and, like outside, refuses to do so without
# tokens: give it CONVEYOR_TOKENS=role:token,... (or --tokens-file), or CONVEYOR_SERVER_INSECURE=1
# on a network you trust. Every option can be set with its CONVEYOR_* variable (docs/configuration.md).

# Build stage: the project's wheel and the wheels of everything it needs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Run stage: those wheels installed, no compiler, no source tree, not root.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONVEYOR_SERVER_HOST=0.0.0.0 \
    CONVEYOR_SERVER_PORT=8000 \
    CONVEYOR_DB=/data/conveyor.db
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/conveyor-*.whl \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 --user-group conveyor \
    && mkdir /data \
    && chown conveyor:conveyor /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# /health answers 200 while the server serves; a worker container turns this check off.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CONVEYOR_SERVER_PORT', '8000'), timeout=4)"]
CMD ["conveyor", "server"]
