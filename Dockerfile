# Conveyor: one image for the server and the workers.
#
#   docker build -t conveyor .
#   docker run -p 8000:8000 -e CONVEYOR_TOKENS=admin:... -v conveyor-data:/data conveyor
#   docker run conveyor conveyor worker --server http://server:8000     (CONVEYOR_TOKEN=...)
#
# The server listens on 0.0.0.0 in the container and, like outside, refuses to do so without
# tokens: give it CONVEYOR_TOKENS=role:token,... (or --tokens-file), or CONVEYOR_SERVER_INSECURE=1
# on a network you trust. Every option can be set with its CONVEYOR_* variable (docs/configuration.md).
# The API port serves REST and the persistent connection (a WebSocket at /api/v1/stream) that
# the SDK and the workers use: a proxy in front of it must pass WebSocket upgrades.

# Build stage: a virtual environment at /opt/conveyor with the project and everything it needs.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hatchling builds the project's wheel from an environment of its own, which the image leaves
# behind (and no download of it at every build); the image's environment needs no setuptools.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install "hatchling>=1.25" \
    && python -m venv /opt/conveyor \
    && /opt/conveyor/bin/pip uninstall --yes setuptools
WORKDIR /src
# The dependencies first, listed from pyproject.toml alone: their layer is rebuilt when they
# change, not at every change to the source.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >requirements.txt \
    && /opt/conveyor/bin/pip install --requirement requirements.txt
COPY README.md ./
COPY src ./src
RUN /opt/build/bin/hatchling build --target wheel --directory /wheels \
    && /opt/conveyor/bin/pip install --no-deps /wheels/conveyor-*.whl

# Run stage: that environment, no build tools, no source tree, not root.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/conveyor/bin:$PATH \
    CONVEYOR_SERVER_HOST=0.0.0.0 \
    CONVEYOR_SERVER_PORT=8000 \
    CONVEYOR_DB=/data/conveyor.db
RUN useradd --create-home --uid 10001 --user-group conveyor \
    && mkdir /data \
    && chown conveyor:conveyor /data
# Everything but the environment comes first: only the last layer changes with the source.
# (COPY ignores USER: the environment belongs to root; the server and its tasks cannot change it.)
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# /health answers 200 while the server serves; a worker container turns this check off.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CONVEYOR_SERVER_PORT', '8000'), timeout=4)"]
CMD ["conveyor", "server"]
COPY --from=build /opt/conveyor /opt/conveyor
