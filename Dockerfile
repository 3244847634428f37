# A small image holding the release binary of ddb2pg.
#   docker build -t ddb2pg:0.1.0 .
#   docker run --rm ddb2pg:0.1.0 --help
#
# Both base images are pinned by digest: a tag can be moved to other contents, a digest cannot.
# The digests below are the ones public Dockerfiles pinned for these tags when this file was
# written (rust:1.89-slim-bookworm and gcr.io/distroless/cc-debian12:nonroot, each seen in
# several unrelated projects); they were not pulled from the registries here. Check them, and
# refresh them when you want the base images' security updates:
#   docker buildx imagetools inspect rust:1.89-slim-bookworm     (its "Digest:" line)
#   crane digest gcr.io/distroless/cc-debian12:nonroot
#
# Build stage: the toolchain the crate asks for (rust-version 1.89), a locked release build.
FROM rust:1.89-slim-bookworm@sha256:d7fc7de78bb8c1469933aeecbf801314d30d7d6e9f0578bba4cfa285bfa37fe6 AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin ddb2pg \
 && strip target/release/ddb2pg

# Run stage: glibc and CA certificates (TLS to AWS and to PostgreSQL with sslmode=verify-full),
# no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /src/target/release/ddb2pg /usr/local/bin/ddb2pg
# Checkpoints belong in S3 (--checkpoint-dir s3://...) for shards; a local --checkpoint-dir
# needs a writable volume here. The working files (rejects being appended, s3:// export
# downloads) go to the temp folder: mount a writable, size-limited volume at /tmp when the
# root filesystem is read-only (deploy/ does).
WORKDIR /work
# /tmp declared a volume: on ECS/Fargate (platform 1.4+) a task volume mounted there is
# root-owned 0755 unless the image declares the path with VOLUME, in which case ECS copies
# the image's /tmp into it, mode included (distroless: 1777), so user 65532 can make its
# working folder there. Docker without -v gives it an anonymous writable volume; Kubernetes
# ignores it (deploy/kubernetes mounts an emptyDir).
VOLUME ["/tmp"]
# distroless's nonroot user, by number: a kubelet asked for runAsNonRoot can only check a
# numeric user ("image has non-numeric user, cannot verify user is non-root" otherwise).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ddb2pg"]
CMD ["--help"]
