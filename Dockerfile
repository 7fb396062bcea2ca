# syntax=docker/dockerfile:1
# The applier's image: `kubetempura` (the kubetempura-applier crate) on distroless, non-root.
#
#   docker build -t ghcr.io/kubetempura/kubetempura:v0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .
#
# The binary links glibc dynamically (aws-lc-rs builds its C code with the image's compiler),
# so the runtime is distroless/cc: glibc, libgcc, CA certificates, no shell, no package manager.
# infra/base/deployment.yaml runs it with `args: ["run"]` as user 65532 on a read-only root.

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# Every workspace member is needed to resolve the workspace; .dockerignore keeps the context small.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubetempura-applier --bin kubetempura \
 && install -D -m 0755 target/release/kubetempura /out/kubetempura

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/kubetempura /usr/local/bin/kubetempura
USER 65532:65532
# /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kubetempura"]
CMD ["run"]
