# GPU worker image: `docker compose up --scale worker=N` runs N of these against one database.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

WORKDIR /opt/hpo
COPY pyproject.toml README.md ./
COPY hpo ./hpo
COPY trainers ./trainers
COPY storage ./storage
RUN pip install --no-cache-dir .

# Data, weights and checkpoints come from volumes (see docker-compose.yml).
ENV HPO_DATA_DIR=/data \
    HPO_WEIGHTS_DIR=/weights \
    HPO_ARTIFACTS=/artifacts \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["hpo"]
CMD ["--help"]
