# A small image holding the release binary of ddb2pg.
#   docker build -t ddb2pg:0.1.0 .
#   docker run --rm ddb2pg:0.1.0 --help
# Build stage: the toolchain the crate asks for (rust-version 1.89), a locked release build.
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin ddb2pg \
 && strip target/release/ddb2pg

# Run stage: glibc and CA certificates (TLS to AWS and to PostgreSQL with sslmode=verify-full),
# no shell, no package manager, an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ddb2pg /usr/local/bin/ddb2pg
# Checkpoints belong in S3 (--checkpoint-dir s3://...) for shards; a local --checkpoint-dir
# needs a writable volume here.
WORKDIR /work
USER nonroot
ENTRYPOINT ["/usr/local/bin/ddb2pg"]
CMD ["--help"]
