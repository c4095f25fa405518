# syntax=docker/dockerfile:1
#
# The `shop` binary in a small image; one image for every component:
#   docker run shop:local order | stock | payment | projections | gateway | token ROLE
# compose.yaml runs the whole system with it (README, "Running on Docker").
#
# librdkafka is built from source by rdkafka-sys and linked statically (rdkafka has no
# `dynamic-linking` feature here), against the system's OpenSSL (rdkafka's `ssl` feature: TLS
# and SASL/SCRAM to Kafka; the build image has libssl-dev and pkg-config); every other TLS is
# rustls. The binary needs glibc, libgcc_s, libssl3 and, for a JWKS fetched over HTTPS or a
# Kafka whose CA is a public one, the CA certificates.

# The toolchain `./dev` builds and tests with (rustc 1.95.0; the workspace's MSRV is 1.85 for
# edition 2024). Build and runtime stages share the Debian release, so glibc matches.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# Dependency caching: cargo's registry, git checkouts and the target directory live in BuildKit
# cache mounts, so a rebuild after a source change recompiles only the workspace crates. The
# target directory is a cache, not a layer: the binary is copied out of it in the same step.
# The release profile keeps line tables (157 MB); the image drops them (symbols stay, so a
# backtrace still names functions) unless built with --build-arg STRIP_DEBUG=false.
ARG STRIP_DEBUG=true
RUN --mount=type=cache,id=shop-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=shop-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=shop-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p shop --bin shop \
    && install -D -m 0755 target/release/shop /out/shop \
    && if [ "$STRIP_DEBUG" = true ]; then strip --strip-debug /out/shop; fi

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# Debian's current CA bundle and OpenSSL library, whatever their versions: pinning a Debian package version breaks the
# build as soon as a security update replaces it in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shop
COPY --from=build /out/shop /usr/local/bin/shop
# The health check: bash's /dev/tcp asks GET /health/ready, so the image needs no curl.
COPY --chmod=0755 infra/containers/healthcheck /usr/local/bin/shop-healthcheck
# Where compose.yaml mounts the token key pair (the services read only the public key). Paths,
# not secrets: hadolint's DL3064 takes any name with KEY in it for one.
# hadolint ignore=DL3064
ENV SHOP_AUTH__PUBLIC_KEY_FILE=/etc/shop/auth/public.pem \
    SHOP_AUTH__PRIVATE_KEY_FILE=/etc/shop/auth/private.pem
# Any relative path in the settings resolves in a directory the non-root user may write in.
WORKDIR /tmp
# Numeric, so a runtime that enforces "run as non-root" can check it without /etc/passwd.
USER 10001:10001
# Components listen on 8080 (gateway) and 8081-8084 (order, stock, payment, projections).
EXPOSE 8080 8081 8082 8083 8084
# Finds the component in PID 1's command line; compose.yaml names it explicitly.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["shop-healthcheck"]
ENTRYPOINT ["shop"]
CMD ["--help"]
