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
    TMP_AIRGAP_TARBALL=${TMP_DIR}/rke2-images.tarball
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
        stage_local_checksums
        stage_local_airgap_tarball
        stage_local_tarball
        return
    fi
    encoded=$(echo "${INSTALL_RKE2_VERSION}" | sed -e 's/+/%2B/g')
    info "downloading checksums at ${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/sha256sum-${ARCH}.txt"
    download "${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/sha256sum-${ARCH}.txt" "${TMP_CHECKSUMS}"
    CHECKSUM_EXPECTED=$(grep "rke2.linux-${ARCH}.tar.gz" "${TMP_CHECKSUMS}" | awk '{print $1}')
    info "downloading tarball at ${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/rke2.linux-${ARCH}.tar.gz"
    download "${INSTALL_RKE2_ARTIFACT_URL}/${encoded}/rke2.linux-${ARCH}.tar.gz" "${TMP_TARBALL}"
}

# As upstream's stage_local_checksums: the tarball's line, and the images archive's line when the
# directory holds one (zst first, then gz). An images archive the checksum file does not name is
# left alone.
stage_local_checksums() {
    info "staging local checksums from ${INSTALL_RKE2_ARTIFACT_PATH}/sha256sum-${ARCH}.txt"
    cp -f "${INSTALL_RKE2_ARTIFACT_PATH}/sha256sum-${ARCH}.txt" "${TMP_CHECKSUMS}" \
        || fatal "missing ${INSTALL_RKE2_ARTIFACT_PATH}/sha256sum-${ARCH}.txt"
    CHECKSUM_EXPECTED=$(grep "rke2.linux-${ARCH}.tar.gz" "${TMP_CHECKSUMS}" | awk '{print $1}')
    if [ -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.zst" ]; then
        AIRGAP_CHECKSUM_EXPECTED=$(grep "rke2-images.linux-${ARCH}.tar.zst" "${TMP_CHECKSUMS}" | awk '{print $1}')
    elif [ -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.gz" ]; then
        AIRGAP_CHECKSUM_EXPECTED=$(grep "rke2-images.linux-${ARCH}.tar.gz" "${TMP_CHECKSUMS}" | awk '{print $1}')
    fi
}

stage_local_airgap_tarball() {
    if [ -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.zst" ]; then
        info "staging zst airgap image tarball from ${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.zst"
        cp -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.zst" "${TMP_AIRGAP_TARBALL}"
        AIRGAP_TARBALL_FORMAT=zst
    elif [ -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.gz" ]; then
        info "staging gzip airgap image tarball from ${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.gz"
        cp -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2-images.linux-${ARCH}.tar.gz" "${TMP_AIRGAP_TARBALL}"
        AIRGAP_TARBALL_FORMAT=gz
    fi
}

stage_local_tarball() {
    info "staging tarball from ${INSTALL_RKE2_ARTIFACT_PATH}/rke2.linux-${ARCH}.tar.gz"
    cp -f "${INSTALL_RKE2_ARTIFACT_PATH}/rke2.linux-${ARCH}.tar.gz" "${TMP_TARBALL}" \
        || fatal "missing ${INSTALL_RKE2_ARTIFACT_PATH}/rke2.linux-${ARCH}.tar.gz"
}

verify_tarball() {
    info "verifying tarball"
    actual=$(sha256sum "${TMP_TARBALL}" | awk '{print $1}')
    if [ "${CHECKSUM_EXPECTED}" != "${actual}" ]; then
        fatal "download sha256 does not match ${CHECKSUM_EXPECTED}, got ${actual}"
    fi
}

verify_airgap_tarball() {
    [ -n "${AIRGAP_CHECKSUM_EXPECTED}" ] || return 0
    info "verifying airgap tarball"
    actual=$(sha256sum "${TMP_AIRGAP_TARBALL}" | awk '{print $1}')
    if [ "${AIRGAP_CHECKSUM_EXPECTED}" != "${actual}" ]; then
        fatal "download sha256 does not match ${AIRGAP_CHECKSUM_EXPECTED}, got ${actual}"
    fi
}

# As upstream: runs BEFORE the tarball is verified (a bad tarball still leaves the images in place).
install_airgap_tarball() {
    [ -n "${AIRGAP_CHECKSUM_EXPECTED}" ] || return 0
    mkdir -p "${INSTALL_RKE2_AGENT_IMAGES_DIR}"
    if grep -sqF '.tar.zst' "${TMP_CHECKSUMS}" || [ "${AIRGAP_TARBALL_FORMAT}" = "zst" ]; then
        info "installing airgap tarball to ${INSTALL_RKE2_AGENT_IMAGES_DIR}"
        dest="${INSTALL_RKE2_AGENT_IMAGES_DIR}/rke2-images.linux-${ARCH}.tar.zst"
        cp -f "${TMP_AIRGAP_TARBALL}" "${dest}.tmp" && mv -f "${dest}.tmp" "${dest}"
    else
        info "decompressing airgap tarball to ${INSTALL_RKE2_AGENT_IMAGES_DIR}"
        gzip -dc "${TMP_AIRGAP_TARBALL}" > "${INSTALL_RKE2_AGENT_IMAGES_DIR}/rke2-images.linux-${ARCH}.tar"
    fi
    for image in "${INSTALL_RKE2_ARTIFACT_PATH}"/rke2-images-*."linux-${ARCH}"*; do
        if [ -f "${image}" ]; then
            info "Installing airgap image from ${image}"
            cp "${image}" "${INSTALL_RKE2_AGENT_IMAGES_DIR}"
        fi
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
    # Heavy stand-ins (rke2fleet_sandbox.costs): what downloading and checking a real tarball of tens
    # of MB takes, as a sleep.
    delay=$(sed -n 's/.*"installDelay": *\([0-9.]*\).*/\1/p' /run/rke2fleet/host.json 2>/dev/null || true)
    if [ -n "${delay}" ]; then
        sleep "${delay}"
    fi
}

do_install() {
    setup_env
    setup_arch
    setup_tmp
    get_release_version
    fetch_artifacts
    verify_airgap_tarball
    install_airgap_tarball
    verify_tarball
    install_tarball
    if [ -z "${INSTALL_RKE2_SKIP_RELOAD}" ]; then
        systemctl daemon-reload
    fi
}

do_install
exit 0
