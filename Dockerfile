# fraudstream daemon image: `docker build -t fraudstream .`
# Dependencies come from requirements.lock (exact pins, `make lock` rewrites it), in their own
# layer so a source change does not reinstall TensorFlow.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

WORKDIR /opt/fraudstream

# 1. the pinned dependencies (the lock also pins the test tools; they are small)
COPY requirements.lock ./
RUN pip install --no-compile -r requirements.lock

# 2. the project itself, without resolving anything again
COPY pyproject.toml README.md ./
COPY fraudstream ./fraudstream
RUN pip install --no-compile --no-deps . \
    && fraudstream --help > /dev/null

# 3. an unprivileged user owning the state directory (checkpoints, artifacts)
RUN useradd --system --uid 10001 --home-dir /var/lib/fraudstream --create-home fraudstream
COPY deploy/fraudstream/config.yaml /etc/fraudstream/config.yaml
USER fraudstream
VOLUME ["/var/lib/fraudstream"]

# /metrics, /healthz, /readyz (set monitoring.host to 0.0.0.0 inside a container)
EXPOSE 9108
ENV FRAUDSTREAM__MONITORING__HOST=0.0.0.0
CMD ["fraudstream", "run", "--config", "/etc/fraudstream/config.yaml"]
