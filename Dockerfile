# Stowage as a container: `docker build -t stowage .`, then e.g.
#   docker run -p 8080:8080 -v stowage-data:/var/lib/stowage stowage
# (the embedded default: SQLite and a directory under /var/lib/stowage). localstack/docker-compose.yml
# builds this image and runs it on PostgreSQL and LocalStack.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY bench/loadgen/Cargo.toml bench/loadgen/Cargo.toml
RUN mkdir -p src bench/loadgen/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > bench/loadgen/src/main.rs \
    && cargo build --release --locked --bin stowage \
    && rm -rf src bench/loadgen/src
COPY src src
COPY migrations migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin stowage

FROM debian:bookworm-slim
# curl only for the health check.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/stowage --create-home stowage
COPY --from=build /src/target/release/stowage /usr/local/bin/stowage
USER stowage
WORKDIR /var/lib/stowage
VOLUME /var/lib/stowage
ENV STOWAGE_LISTEN=0.0.0.0:8080 \
    STOWAGE_LOG_FORMAT=json
EXPOSE 8080
# Liveness; readiness (/readyz) is for the orchestrator's traffic decisions.
HEALTHCHECK --interval=10s --timeout=3s --start-period=40s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${STOWAGE_LISTEN##*:}/healthz" >/dev/null || exit 1
ENTRYPOINT ["stowage"]
CMD ["serve"]
