# API and catalog image: no torch, a few hundred MB.
# Built by deploy/scripts/build-images.sh (from the repository root).
# (Not built in this repository's CI: it has no container engine.)
FROM python:3.12-slim-bookworm

# tini as PID 1: SIGTERM then reaches the service with its default action
# until the service installs its own handler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY services ./services
RUN pip install ".[api,catalog]" && rm -rf /src
# The browser app: static files, served by the API from MOCHI_WEB_DIR.
COPY web /opt/mochi/web

# The uid the manifests run as (runAsUser: 10001); the image works without a
# writable root filesystem, with /tmp from an emptyDir.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp mochi
USER 10001
WORKDIR /tmp
ENTRYPOINT ["tini", "--", "mochi"]
CMD ["api"]
