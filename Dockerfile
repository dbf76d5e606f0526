# One image for the perflaw service and its job worker, on CPU PyTorch.
#
#   docker build -t perflaw .
#   docker run --rm -p 8000:8000 -v perflaw-data:/var/lib/perflaw perflaw          # perflaw serve
#   docker run --rm -v perflaw-data:/var/lib/perflaw perflaw perflaw worker        # a job worker
#
# `perflaw serve` listens on 0.0.0.0 in the container, so it starts only once an API key
# exists (`perflaw keys create --tenant NAME`); docs/deployment.md has the full sequence.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# The CPU-only PyTorch wheels; the default index on PyPI would pull a multi-gigabyte CUDA build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, so that the project's torch requirement is already met when it is installed.
RUN python -m venv /opt/perflaw \
    && /opt/perflaw/bin/pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY app ./app
COPY worker ./worker
RUN /opt/perflaw/bin/pip install .


FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/perflaw/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    PERFLAW_DATA_DIR=/var/lib/perflaw \
    PERFLAW_LOG_FORMAT=json \
    PERFLAW_DEVICE=cpu

RUN groupadd --system --gid 10001 perflaw \
    && useradd --system --uid 10001 --gid perflaw --home-dir /var/lib/perflaw --no-create-home perflaw \
    && mkdir -p /var/lib/perflaw \
    && chown perflaw:perflaw /var/lib/perflaw

COPY --from=build /opt/perflaw /opt/perflaw

USER 10001:10001
WORKDIR /var/lib/perflaw
VOLUME ["/var/lib/perflaw"]
EXPOSE 8000

# The slim image has no curl; Python's standard library does the probe. A worker container
# serves no HTTP, so compose.yaml gives it a healthcheck of its own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["perflaw", "serve", "--host", "0.0.0.0", "--port", "8000"]
