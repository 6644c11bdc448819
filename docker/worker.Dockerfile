# Graft CUDA worker image: PyTorch's PyPI wheels bundle the CUDA runtime; the host needs the NVIDIA driver
# and the NVIDIA container toolkit (compose reserves the GPU).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GRAFT_HOME=/var/lib/graft \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility TORCH_HOME=/var/lib/graft/torch
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
RUN useradd --create-home graft && mkdir -p /var/lib/graft/torch/hub/checkpoints && chown -R graft /var/lib/graft
USER graft
CMD ["graft", "worker"]
