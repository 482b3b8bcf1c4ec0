# Pulse: one image, two entry points (`pulse run` = the flow, `pulse serve` = gRPC).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pulse ./pulse
COPY flows ./flows
COPY operators ./operators
COPY state ./state
COPY serving ./serving
COPY proto ./proto
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 pulse \
    && mkdir -p /var/lib/pulse && chown pulse:pulse /var/lib/pulse
COPY --from=build /install /usr/local
# The example segment definitions (deploy/segments.yaml); used when PULSE_SEGMENTS_PATH
# points at them (docker-compose.yml does), or mount your own.
COPY deploy/segments.yaml /etc/pulse/segments.yaml
USER pulse
WORKDIR /home/pulse
ENV PULSE_STATE_DIR=/var/lib/pulse \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/pulse"]
# 50051 gRPC (serve), 9464 processor metrics (run), 9465 serving metrics (serve)
EXPOSE 50051 9464 9465
ENTRYPOINT ["pulse"]
CMD ["run"]
