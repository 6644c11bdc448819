# Graft API image: FastAPI + uvicorn; predict runs on the CPU here.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GRAFT_HOME=/var/lib/graft GRAFT_HOST=0.0.0.0
# Optional: a CPU-only PyTorch index to keep the image small (e.g. --build-arg TORCH_INDEX_URL=<index>).
ARG TORCH_INDEX_URL=
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url "$TORCH_INDEX_URL"; fi \
    && pip install --no-cache-dir -e .
RUN useradd --create-home graft && mkdir -p /var/lib/graft && chown graft /var/lib/graft
USER graft
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["graft", "api"]
