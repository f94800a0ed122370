#!/bin/sh
# Build a local Debian bookworm base image with Python 3.11 when no registry can be reached.
#
#   infra/base-image.sh [TAG]          (default TAG: fraudlab/base:bookworm)
#
# Why: the stack's images default to the official ones (python:3.11-slim, postgres:15,
# redis:7), but on a machine where Docker Hub does not answer nothing can be pulled. Debian's
# mirror usually still answers, so we make the root filesystem ourselves with debootstrap and
# `docker import` it. The result plays the role of python:3.11-slim: a minimal bookworm with
# Debian's python3 (3.11) at /usr/bin/python3, python3-venv and CA certificates. The project,
# PostgreSQL and Redis images are then built FROM it (BASE_IMAGE build argument).
#
# Needs: root (debootstrap chroots and creates device nodes), debootstrap (installed with
# apt-get when missing on a Debian-family host), a reachable Debian mirror (DEBIAN_MIRROR), a
# Docker engine.
# Idempotent: an existing TAG is kept unless FORCE=1. Takes ~3-6 minutes on 2 cores.
set -eu

TAG="${1:-fraudlab/base:bookworm}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# What python:3.11-slim has that a minbase does not: the interpreter, venv support, CA
# certificates (HTTPS to PyPI), netbase (/etc/services, /etc/protocols: Python's socket
# module and many clients read them) and tzdata.
PACKAGES="python3,python3-venv,ca-certificates,netbase,tzdata"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG already exists (FORCE=1 to rebuild)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "infra/base-image.sh must run as root (debootstrap needs it): sudo $0 $TAG" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    # A fresh Debian/Ubuntu host: install it from the distribution's packages (we are root).
    if command -v apt-get >/dev/null 2>&1; then
        echo "debootstrap is missing: installing it with apt-get ..."
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }; then
            echo "apt-get could not install debootstrap: install it by hand, then run this again" >&2
            exit 1
        fi
    else
        echo "debootstrap is missing: install it (Debian: apt-get install debootstrap), then run this again" >&2
        exit 1
    fi
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/fraudlab-rootfs.XXXXXX")"
# Unmount anything the chroot steps mounted before removing the tree, even on failure.
cleanup() {
    umount "$ROOTFS/proc" 2>/dev/null || true
    rm -rf "$ROOTFS"
}
trap cleanup EXIT INT TERM

echo "debootstrap $SUITE from $MIRROR into $ROOTFS (variant minbase) ..."
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# Sources the derived images' `apt-get install` will use, security updates included.
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

# Bring the tree up to date with the security suite (debootstrap only knows the release),
# then drop everything an image does not need: package lists, caches, docs, man pages.
mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" sh -c 'export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get upgrade -y -q && apt-get clean'
umount "$ROOTFS/proc"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*
# Like the official Debian images: apt never keeps downloaded .debs, never installs docs.
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
EOF
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
# Trust what this machine trusts: CA certificates added locally (a TLS-inspecting proxy in front
# of PyPI, a corporate CA) would otherwise make every `pip`/`uv` download in the derived
# builds fail certificate verification. Public certificates only; no keys are copied.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null
    echo "added this machine's local CA certificates: $(ls /usr/local/share/ca-certificates/)"
fi
# The host's resolver must not leak into the image; Docker writes its own at run time.
: >"$ROOTFS/etc/resolv.conf"

echo "docker import -> $TAG ..."
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "fraudlab local base: debootstrap $SUITE minbase + $PACKAGES" \
    - "$TAG"
docker run --rm "$TAG" python3 -c 'import ssl, sys, venv; print("base ok:", sys.version.split()[0])'
