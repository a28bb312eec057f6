# Natter's images, one multi-stage build: `docker build --target gateway .` (or auth-api, persister).
# The binaries are built once in the Rust stage; each image is Debian slim with one binary, run as a non-root user,
# with a health check on its /healthz. The auth API's image also carries the built web client.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p natter-auth-api -p natter-gateway -p natter-persister

FROM node:20-bookworm AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin natter
USER natter

FROM runtime AS auth-api
COPY --from=build /src/target/release/natter-auth-api /usr/local/bin/natter-auth-api
COPY --from=web /web/dist /srv/natter-web
ENV NATTER_API_LISTEN=0.0.0.0:8080 NATTER_API_ADMIN_LISTEN=0.0.0.0:9180 NATTER_WEB_DIR=/srv/natter-web
EXPOSE 8080 9180
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:9180/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/natter-auth-api"]

FROM runtime AS gateway
COPY --from=build /src/target/release/natter-gateway /usr/local/bin/natter-gateway
ENV NATTER_GATEWAY_LISTEN=0.0.0.0:9001 NATTER_GATEWAY_ADMIN_LISTEN=0.0.0.0:9190
EXPOSE 9001 9190
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:9190/healthz || exit 1
# Drain on SIGTERM: give it longer than --drain-grace (30 s) before the kill (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/natter-gateway"]

FROM runtime AS persister
COPY --from=build /src/target/release/natter-persister /usr/local/bin/natter-persister
ENV NATTER_PERSISTER_ADMIN_LISTEN=0.0.0.0:9100
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:9100/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/natter-persister"]
