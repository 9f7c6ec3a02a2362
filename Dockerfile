# multitune: the pipeline in a container. CPU by default; for GPU nodes pick a CUDA build of
# torch with the TORCH build argument (a wheel index of download.pytorch.org):
#   docker build -t multitune .                        # CPU (torch 2.13.0+cpu)
#   docker build -t multitune:cu128 --build-arg TORCH=cu128 .
#   docker run --rm -v "$PWD:/work" -w /work multitune            # dvc repro on your project
#   docker run --rm --gpus all multitune:cu128 dvc repro sweep
# The install is `make install`, the Makefile's own: the same pip commands, the same
# requirements/lock.txt constraints (tests/team/test_docker.py checks they cannot drift).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# cpu | cu126 | cu128 | ...: which torch build pip takes for the pinned torch version.
ARG TORCH=cpu
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/${TORCH} \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/multitune
# What the Makefile's install reads, first: the dependency layer is rebuilt only when the
# pins change.
COPY Makefile pyproject.toml README.md ./
COPY requirements/ requirements/
COPY src/ src/
RUN make install

COPY . .
# No .git in the image (see .dockerignore): DVC runs without an SCM here.
RUN .venv/bin/dvc config --local core.no_scm true

ENV PATH=/opt/multitune/.venv/bin:${PATH} \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0 \
    DVC_NO_ANALYTICS=1 \
    DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1
CMD ["dvc", "repro"]
