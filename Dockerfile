# Used by localstack/docker-compose.yml; not needed to run Stowage from source.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin stowage

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/stowage /usr/local/bin/stowage
USER nobody
WORKDIR /tmp
ENTRYPOINT ["stowage"]
CMD ["serve"]
