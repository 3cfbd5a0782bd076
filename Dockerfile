FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY schemas ./schemas
RUN pip install . && rm -rf /src

COPY hub.yaml /etc/hub/hub.yaml
COPY examples/partner-schema.json /etc/hub/examples/partner-schema.json
RUN useradd --system --no-create-home hub && mkdir -p /var/lib/hub && chown hub /var/lib/hub
USER hub
WORKDIR /
# Without HUB_STORE (a Redis URL), the sample's embedded store keeps its data here.
ENV HUB_HOST=0.0.0.0 HUB_CONFIG=/etc/hub/hub.yaml HUB_STORE_PATH=/var/lib/hub/store
VOLUME /var/lib/hub
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
STOPSIGNAL SIGTERM
CMD ["hub", "serve"]
