# The Pulse binaries (pulse-worker, pulse-starter) with ffmpeg and the demo page.
# Built by docker-compose.temporal.yml; `docker build -t pulse .` works on its own.

FROM rust:1.92-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pulse-worker -p pulse-starter

FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY web/index.html web/app.js ./

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home pulse
COPY --from=build /src/target/release/pulse-worker /src/target/release/pulse-starter /usr/local/bin/
COPY --from=web /web /app/web
ENV PULSE_WEB_DIR=/app/web \
    PULSE_WORK_DIR=/home/pulse/work
USER pulse
CMD ["pulse-worker"]
