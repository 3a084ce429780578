# First cut: a static-ish release build on Debian, run as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p image-registry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1001 --home-dir /registry --no-create-home registry \
    && mkdir -p /registry /etc/image-registry && chown 1001 /registry
COPY --from=build /src/target/release/image-registry /usr/bin/image-registry
COPY config/openshift-emptydir.yml /etc/image-registry/config.yml
USER 1001
VOLUME /registry
EXPOSE 5000
ENV REGISTRY_CONFIGURATION_PATH=/etc/image-registry/config.yml
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:5000/healthz || exit 1
ENTRYPOINT ["/usr/bin/image-registry"]
CMD ["serve"]
