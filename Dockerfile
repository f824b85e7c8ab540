# fedsim project image: one image for the SuperLink (ServerApp subprocesses) and every SuperNode (ClientApp
# subprocesses). CPU-only torch from the PyTorch CPU index, then the project itself (editable).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FLWR_HOME=/flwr \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1

WORKDIR /app
RUN pip install --upgrade pip \
 && pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY fedsim ./fedsim
COPY attacks ./attacks
COPY clients ./clients
COPY server ./server
COPY configs ./configs
RUN pip install -e . && mkdir -p /app/runs /flwr

# no entrypoint: docker-compose.yml gives each service its Flower command
CMD ["flower-superlink", "--help"]
