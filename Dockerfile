# Multi-stage build of image-registry: build with the Rust toolchain on Debian, run on a slim Debian
# as a non-root user. Port 5000, data volume /registry, config at /etc/image-registry/config.yml.
#
#   docker build -t image-registry .
#   docker run -p 5000:5000 -v registry-data:/registry image-registry
#
# TLS: mount a certificate and key and set REGISTRY_HTTP_TLS_CERTIFICATE / REGISTRY_HTTP_TLS_KEY;
# the health check below tries HTTPS when HTTP fails.
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY conformance/Cargo.toml conformance/Cargo.toml
RUN mkdir -p src conformance/src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > conformance/src/main.rs && echo 'fn main() {}' > benches/hot_paths.rs \
    && cargo build --release --locked -p image-registry || true
COPY . .
ARG GIT_COMMIT=unknown
ENV IMAGE_REGISTRY_GIT_COMMIT=$GIT_COMMIT
RUN touch src/main.rs src/lib.rs && cargo build --release --locked -p image-registry \
    && install -D -m 0755 target/release/image-registry /out/image-registry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1001 --gid 0 --home-dir /registry --no-create-home registry \
    && mkdir -p /registry /etc/image-registry && chown 1001:0 /registry && chmod g+rwx /registry
COPY --from=build /out/image-registry /usr/bin/image-registry
COPY config/openshift-emptydir.yml /etc/image-registry/config.yml
USER 1001
VOLUME /registry
EXPOSE 5000
ENV REGISTRY_CONFIGURATION_PATH=/etc/image-registry/config.yml
# Liveness only (storage trouble shows in /healthz/ready, not here).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:5000/healthz || curl -fsSk https://127.0.0.1:5000/healthz || exit 1
# SIGTERM drains in-flight requests for http.draintimeout (29 s) before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/image-registry"]
CMD ["serve"]
