# syntax=docker/dockerfile:1
#
# portvakt container image: build with the official Rust image, run on distroless.
#
#   docker build -t portvakt .
#   docker run -p 8080:8080 -v portvakt-data:/data portvakt
#
# A cold release build takes 20-30 minutes on two cores (aws-lc and SQLite are compiled
# from C); the cache mounts below make later builds incremental.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are cache mounts, so they are not in any layer: the
# binary has to be copied out in the same step that builds it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin portvakt \
 && install -D -m 0755 target/release/portvakt /out/usr/local/bin/portvakt \
 && install -d -m 0700 /out/state/data

# Runtime: distroless "cc" rather than "static" or scratch, because the binary links
# glibc and libgcc_s dynamically (aws-lc-rs and the bundled SQLite are C, and Rust's
# unwinder uses libgcc_s); it needs nothing else (no OpenSSL). Distroless ships exactly
# that plus CA certificates and tzdata, with no shell or package manager to exploit, and
# its `nonroot` tag runs as uid/gid 65532. For a shell while debugging, swap in the
# `debug-nonroot` tag of the same image.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/usr/local/bin/portvakt /usr/local/bin/portvakt
# Created in the build stage (distroless has no mkdir) and owned by the runtime user, so a
# fresh named volume mounted here inherits owner and mode 0700. The parent is copied, not
# /out/state/data itself: COPY of a directory copies its contents into a new 0755 folder.
COPY --from=build --chown=65532:65532 /out/state/ /
USER 65532:65532
ENV PORTVAKT_ADDR=0.0.0.0:8080 \
    PORTVAKT_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# `portvakt healthcheck` asks GET /health on PORTVAKT_ADDR itself (127.0.0.1 when bound to
# 0.0.0.0), so the image needs no curl. The start period covers migrations on first start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/portvakt", "healthcheck"]
# SIGTERM starts a graceful drain of up to PORTVAKT_SHUTDOWN_TIMEOUT (30s by default):
# give `docker stop` more than that (`docker stop -t 40`, or stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portvakt"]
CMD ["serve"]
