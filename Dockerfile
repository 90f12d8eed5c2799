# kedascaler: the KEDA external scaler for vLLM. Two stages: dependencies are resolved from uv.lock in the
# builder; the final image holds only the virtual environment (no compilers, no uv, no pip cache).
# The base is pinned to a Python patch release and a Debian release, the same for both stages; raise both
# together (and rebuild) for security updates.

FROM python:3.11.17-slim-trixie AS builder
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# Dependencies first, so that a source change does not re-resolve them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-editable
COPY README.md ./
COPY kedascaler ./kedascaler
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11.17-slim-trixie
LABEL org.opencontainers.image.title="kedascaler" \
      org.opencontainers.image.description="KEDA external scaler for vLLM inference servers" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 kedascaler \
    && useradd --system --uid 10001 --gid kedascaler --no-create-home --shell /usr/sbin/nologin kedascaler
COPY --from=builder --chown=root:root /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9090 8080
ENTRYPOINT ["kedascaler", "serve"]
