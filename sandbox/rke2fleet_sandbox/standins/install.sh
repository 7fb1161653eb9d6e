#!/bin/sh
# Sandbox stand-in for https://get.rke2.io (tarball method only), served by rke2fleet_sandbox.installer.
# Usage: curl -sfL URL | INSTALL_RKE2_VERSION=... INSTALL_RKE2_TYPE=server sh -
set -e

if [ -n "${DEBUG}" ]; then
    set -x
fi

# Filled in by the installer endpoint (the real defaults are update.rke2.io and GitHub).
DEFAULT_CHANNEL_URL="@CHANNEL_URL@"
DEFAULT_ARTIFACT_URL="@ARTIFACT_URL@"

info() { echo "[INFO] " "$@"; }
warn() { echo "[WARN] " "$@" >&2; }
fatal() { echo "[ERROR] " "$@" >&2; exit 1; }

setup_env() {
    INSTALL_RKE2_CHANNEL_URL=${INSTALL_RKE2_CHANNEL_URL:-$DEFAULT_CHANNEL_URL}
    INSTALL_RKE2_CHANNEL=${INSTALL_RKE2_CHANNEL:-stable}
    INSTALL_RKE2_ARTIFACT_URL=${INSTALL_RKE2_ARTIFACT_URL:-$DEFAULT_ARTIFACT_URL}
    INSTALL_RKE2_TYPE=${INSTALL_RKE2_TYPE:-server}
    INSTALL_RKE2_AGENT_IMAGES_DIR=${INSTALL_RKE2_AGENT_IMAGES_DIR:-/var/lib/rancher/rke2/agent/images}
    case "${INSTALL_RKE2_TYPE}" in
        server|agent) ;;
        *) fatal "Invalid INSTALL_RKE2_TYPE ${INSTALL_RKE2_TYPE}: must be server or agent" ;;
    esac
    if [ "$(id -u)" -ne 0 ]; then
        fatal "You need to be root to perform this install"
    fi
    if [ -n "${INSTALL_RKE2_METHOD}" ] && [ "${INSTALL_RKE2_METHOD}" != tar ]; then
        warn "INSTALL_RKE2_METHOD=${INSTALL_RKE2_METHOD}: only the tar method exists in the sandbox"
    fi
    INSTALL_RKE2_TAR_PREFIX=${INSTALL_RKE2_TAR_PREFIX:-/usr/local}
    mkdir -p "${INSTALL_RKE2_TAR_PREFIX}" 2>/dev/null || true
    if ! touch "${INSTALL_RKE2_TAR_PREFIX}/.rke2-ci-test" 2>/dev/null; then
        INSTALL_RKE2_TAR_PREFIX=/opt/rke2
        warn "${INSTALL_RKE2_TAR_PREFIX} is read-only or a mount point; installing to /opt/rke2"
        mkdir -p /opt/rke2
    else
        rm -f "${INSTALL_RKE2_TAR_PREFIX}/.rke2-ci-test"
    fi
}

setup_arch() {
    case ${ARCH:=$(uname -m)} in
        amd64|x86_64) ARCH=amd64 ;;
        arm64|aarch64) ARCH=arm64 ;;
        s390x) ARCH=s390x ;;
        *) fatal "unsupported architecture ${ARCH}" ;;
    esac
}

setup_tmp() {
    TMP_DIR=$(mktemp -d -t rke2-install.XXXXXXXXXX)
    TMP_CHECKSUMS=${TMP_DIR}/rke2.checksums
    TMP_TARBALL=${TMP_DIR}/rke2.tarball
    cleanup() {
        code=$?
        set +e
        trap - EXIT
        rm -rf "${TMP_DIR}"
        exit $code
    }
    trap cleanup INT EXIT
}

download() {
    [ $# -eq 2 ] || fatal "download needs exactly 2 arguments"
    if ! curl -o "$2" -fsSL --connect-timeout 10 --max-time 120 "$1"; then
        fatal "download failed"
    fi
}

get_release_version() {
    if [ -n "${INSTALL_RKE2_VERSION}" ]; then
        return
    fi
    if [ -n "${INSTALL_RKE2_ARTIFACT_PATH}" ]; then
        return
    fi
    info "finding release for channel ${INSTALL_RKE2_CHANNEL}"
    version_url="${INSTALL_RKE2_CHANNEL_URL}/${INSTALL_RKE2_CHANNEL}"
    INSTALL_RKE2_VERSION=$(curl -w "%{url_effective}" -L -s -S --connect-timeout 10 --max-time 60 \
        "${version_url}" -o /dev/null | sed -e 's|.*/||')
    [ -n "${INSTALL_RKE2_VERSION}" ] || fatal "failed to resolve the version of channel ${INSTALL_RKE2_CHANNEL}"
}

fetch_artifacts() {
    if [ -n "${INSTALL_RKE2_ARTIFACT_PATH}" ]; then
        info "staging local checksums from ${INSTALL_RKE2_ARTIFACT_PATH}/sha256sum-${ARCH}.txt"
        cp -f "${INSTALL_RKE2_ARTIFACT_PATH}/sha256sum-${ARCH}.txt" "${TMP_CHECKSUMS}" \
            || fatal "missing ${INSTALL_RKE2_ARTIFACT_PATH}/sha256sum-${ARCH}.txt"
        info "staging tarball from ${INSTALL_RKE2_ARTIFACT_PATH}/rke2.linux-${ARCH}.tar.gz"
        cp -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2.linux-${ARCH}.tar.gz" "${TMP_TARBALL}" \
            || fatal "missing ${INSTALL_RKE2_ARTIFACT_PATH}/rke2.linux-${ARCH}.tar.gz"
        return
    fi
    encoded=$(echo "${INSTALL_RKE2_VERSION}" | sed -e 's/+/%2B/g')
    info "downloading checksums at ${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/sha256sum-${ARCH}.txt"
    download "${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/sha256sum-${ARCH}.txt" "${TMP_CHECKSUMS}"
    info "downloading tarball at ${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/rke2.linux-${ARCH}.tar.gz"
    download "${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/rke2.linux-${ARCH}.tar.gz" "${TMP_TARBALL}"
}

verify_tarball() {
    info "verifying tarball"
    expected=$(grep "rke2.linux-${ARCH}.tar.gz" "${TMP_CHECKSUMS}" | awk '{print $1}')
    actual=$(sha256sum "${TMP_TARBALL}" | awk '{print $1}')
    if [ -z "${expected}" ] || [ "${expected}" != "${actual}" ]; then
        fatal "download sha256 does not match ${expected}, got ${actual}"
    fi
}

install_airgap_images() {
    [ -n "${INSTALL_RKE2_ARTIFACT_PATH}" ] || return 0
    for image in "${INSTALL_RKE2_ARTIFACT_PATH}"/rke2-images*.linux-"${ARCH}".tar*; do
        [ -f "${image}" ] || continue
        name=$(basename "${image}")
        grep -q "${name}" "${TMP_CHECKSUMS}" || continue
        mkdir -p "${INSTALL_RKE2_AGENT_IMAGES_DIR}"
        cp -f "${image}" "${INSTALL_RKE2_AGENT_IMAGES_DIR}/.${name}.tmp"
        mv -f "${INSTALL_RKE2_AGENT_IMAGES_DIR}/.${name}.tmp" "${INSTALL_RKE2_AGENT_IMAGES_DIR}/${name}"
    done
}

# Unpack into a staging dir next to the destination, then rename file by file: an interrupted
# install leaves each file either old or new, and a re-run completes it.
install_tarball() {
    info "unpacking tarball file to ${INSTALL_RKE2_TAR_PREFIX}"
    rm -rf "${INSTALL_RKE2_TAR_PREFIX}"/.rke2-stage.*
    stage=$(mktemp -d "${INSTALL_RKE2_TAR_PREFIX}/.rke2-stage.XXXXXX")
    tar xzf "${TMP_TARBALL}" -C "${stage}" || fatal "failed to unpack the tarball"
    # Shell expansions and `[ -d ]` instead of $(dirname) and an unconditional mkdir: one process per
    # file (the mv), not three; this runs inside the timed converge of every host.
    (cd "${stage}" && find . -type f) | while read -r file; do
        dest="${INSTALL_RKE2_TAR_PREFIX}/${file#./}"
        [ -d "${dest%/*}" ] || mkdir -p "${dest%/*}"
        mv -f "${stage}/${file#./}" "${dest}"
    done
    rm -rf "${stage}"
}

do_install() {
    setup_env
    setup_arch
    setup_tmp
    get_release_version
    fetch_artifacts
    verify_tarball
    install_airgap_images
    install_tarball
    if [ -z "${INSTALL_RKE2_SKIP_RELOAD}" ]; then
        systemctl daemon-reload
    fi
}

do_install
exit 0
