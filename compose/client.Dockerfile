# The rex-stream client: explains every image of a directory against a Triton server.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml ./
COPY rex_stream ./rex_stream
COPY adapters ./adapters
RUN touch README.md && pip install --no-cache-dir ".[triton,dask]"

COPY compose/explain-dir.sh /usr/local/bin/explain-dir
RUN chmod +x /usr/local/bin/explain-dir
ENTRYPOINT ["explain-dir"]
