# One bank node of the consortium. docker-compose.yml runs one container per bank of
# consorcio.yml; the bank is chosen with BANK_ID and listens on 0.0.0.0 inside the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only the runtime part of requirements.txt (everything above its "# Tools" line).
COPY requirements.txt .
RUN awk '/^# Tools/ {exit} {print}' requirements.txt > /tmp/runtime.txt \
    && pip install -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt

RUN groupadd --system --gid 10001 bank \
    && useradd --system --uid 10001 --gid bank --home-dir /app --shell /usr/sbin/nologin bank \
    && mkdir /data && chown bank:bank /data

COPY --chown=root:root broker/ broker/
COPY --chown=root:root bank_node/ bank_node/
COPY --chown=root:root web_ui/ web_ui/
COPY --chown=root:root consorcio.yml .

# The ledger (SQLite, WAL) and the bank's secret key live here; keep it on a volume.
VOLUME ["/data"]
USER bank

ENV CONSORCIO_CONFIG=/app/consorcio.yml \
    BANK_HOST=0.0.0.0
EXPOSE 8001 8002 8003

# Healthy = /api/health answers with the broker connected. The port comes from the config, by BANK_ID.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import json, os, sys, urllib.request; from bank_node.config import load_config; bank = load_config(os.environ['CONSORCIO_CONFIG']).bank(os.environ['BANK_ID']); r = urllib.request.urlopen(f'http://127.0.0.1:{bank.port}/api/health', timeout=4); sys.exit(0 if json.load(r).get('status') == 'ok' else 1)"]

# SIGTERM (docker stop) reaches python directly thanks to exec: the bank stops gracefully.
CMD ["sh", "-c", "exec python -m bank_node --config \"$CONSORCIO_CONFIG\" --bank \"$BANK_ID\" --data-dir /data"]
