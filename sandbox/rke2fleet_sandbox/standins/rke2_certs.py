"""The leaf certificates of a sandbox RKE2 node: issued at its first start, renewed at a start inside
the renewal window, rotated and checked by ``rke2 certificate``, aged by the sandbox's fault switch.

Real X.509 certificates (self-signed, EC P-256, 365 days) made with ``cryptography``, which is
imported only where certificates are made or read: a plain restart reads the small JSON index
(``<data-dir>/.sandbox-certificates.json``, each certificate's notBefore/notAfter) and nothing else.
The rke2 daemon runs the issuing part as a child (``python -s rke2_certs.py ensure ...``), so the
long-lived process never holds ``cryptography``.

Command line (the child and the sandbox's tools; run inside the host):
  ``rke2_certs.py ensure --data-dir D --role R --node N --address A --window DAYS``
  ``rke2_certs.py age --days N [--data-dir D]`` (moves both dates of every certificate back N days)
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_DATA_DIR = "/var/lib/rancher/rke2"
CONFIG_FILE = "/etc/rancher/rke2/config.yaml"
INDEX = ".sandbox-certificates.json"
LIFETIME_DAYS = 365
DAY = 86400.0
REPORT = "cert: "  # a child's line meant for the node's log

# path under the data dir: (common name, organization, usage, service)
CERTS: dict[str, tuple[str, str | None, str, str]] = {
    "agent/client-kubelet.crt": ("system:node:{node}", "system:nodes", "client", "kubelet"),
    "agent/serving-kubelet.crt": ("{node}", None, "serving", "kubelet"),
    "agent/client-kube-proxy.crt": ("system:kube-proxy", None, "client", "kube-proxy"),
    "server/tls/client-admin.crt": ("system:admin", "system:masters", "client", "admin"),
    "server/tls/serving-kube-apiserver.crt": ("kube-apiserver", None, "serving", "api-server"),
    "server/tls/client-supervisor.crt": ("system:rke2-supervisor", "system:masters", "client", "supervisor"),
}
SERVICES = sorted({spec[3] for spec in CERTS.values()})
SERVICE_ALIASES = {"rke2-server": "supervisor", "rke2-controller": "supervisor", "kube-apiserver": "api-server",
                   "apiserver": "api-server"}


def expected(role: str) -> list[str]:
    return [rel for rel in CERTS if role == "server" or rel.startswith("agent/")]


def renewal_window_days(version: str) -> int:
    """120 days for RKE2 v1.29 and later, 90 before (the releases before 2024)."""
    try:
        major, minor = (int(p) for p in version.lstrip("v").split(".")[:2])
    except ValueError:
        return 120
    return 120 if (major, minor) >= (1, 29) else 90


def key_path(cert_path: str) -> str:
    return cert_path[: -len(".crt")] + ".key"


# -- the index (stdlib only) -------------------------------------------------------------------------
def load_index(data_dir: str) -> dict[str, dict[str, float]]:
    try:
        with open(os.path.join(data_dir, INDEX)) as f:
            certs: dict[str, dict[str, float]] = json.load(f).get("certificates", {})
            return certs
    except (OSError, ValueError, AttributeError):
        return {}


def save_index(data_dir: str, certs: dict[str, dict[str, float]]) -> None:
    path = os.path.join(data_dir, INDEX)
    os.makedirs(data_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps({"certificates": certs}, indent=1, sort_keys=True))
    os.replace(tmp, path)


def needs_work(data_dir: str, role: str, window_days: int, now: float | None = None) -> bool:
    """Whether a start must issue or renew anything (from the index and the files' existence)."""
    now = time.time() if now is None else now
    index = load_index(data_dir)
    for rel in expected(role):
        entry = index.get(rel)
        if entry is None or not os.path.exists(os.path.join(data_dir, rel)):
            return True
        if float(entry.get("notAfter", 0)) - now < window_days * DAY:
            return True
    return False


def run_child(argv: list[str]) -> tuple[int, list[str]]:
    """Run ``argv`` with stdout+stderr into a pipe (no subprocess import): (exit code, output lines)."""
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, out_w, 2),
        ])
    finally:
        os.close(out_w)
    chunks = []
    while data := os.read(out_r, 65536):
        chunks.append(data)
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace").splitlines()


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- making and reading certificates (cryptography, imported here only) ------------------------------
def _write(path: str, data: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _datetime(t: float) -> Any:
    import datetime

    return datetime.datetime.fromtimestamp(int(t), datetime.UTC)


def issue(data_dir: str, rel: str, node: str, address: str, now: float) -> tuple[float, float]:
    """A new key and a self-signed certificate valid from ``now`` for 365 days: (notBefore, notAfter)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    common_name, org, usage, _ = CERTS[rel]
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name.format(node=node))]
    if org:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    subject = x509.Name(attributes)
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = float(int(now)), float(int(now + LIFETIME_DAYS * DAY))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_datetime(not_before)).not_valid_after(_datetime(not_after))
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if usage == "client"
                                                     else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if usage == "serving":
        names: list[x509.GeneralName] = [x509.DNSName(node), x509.DNSName("localhost")]
        if rel.endswith("kube-apiserver.crt"):
            names += [x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc")]
        for ip in (address, "127.0.0.1"):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(ip)))
            except ValueError:
                pass
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    path = os.path.join(data_dir, rel)
    _write(key_path(path), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                             serialization.NoEncryption()), 0o600)
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return not_before, not_after


def read_cert(path: str) -> Any:
    from cryptography import x509

    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def cert_dates(cert: Any) -> tuple[float, float]:
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def ensure(data_dir: str, role: str, node: str, address: str, window_days: int) -> list[str]:
    """Issue what is missing, renew what expires within the window; returns the lines to log."""
    now = time.time()
    index = load_index(data_dir)
    issued, lines = [], []
    for rel in expected(role):
        path = os.path.join(data_dir, rel)
        if os.path.exists(path) and os.path.exists(key_path(path)):
            not_before, not_after = cert_dates(read_cert(path))
            days_left = (not_after - now) / DAY
            if days_left >= window_days:
                index[rel] = {"notBefore": not_before, "notAfter": not_after}
                continue
            state = "expired" if days_left < 0 else f"will expire within {window_days} days"
            lines.append(f"Certificate {path} {state} (notAfter {iso(not_after)}, {int(days_left)} days left): "
                         "renewing")
        else:
            issued.append(rel)
        not_before, not_after = issue(data_dir, rel, node, address, now)
        index[rel] = {"notBefore": not_before, "notAfter": not_after}
    if issued:
        lines.append(f"Generated certificates {', '.join(os.path.basename(r) for r in issued)} "
                     f"(valid until {iso(now + LIFETIME_DAYS * DAY)})")
    save_index(data_dir, index)
    return lines


def age(data_dir: str, days: float) -> list[str]:
    """Move notBefore and notAfter of every certificate ``days`` back (files re-signed, index updated)."""
    from cryptography.hazmat.primitives import hashes, serialization

    index = load_index(data_dir)
    out = []
    for rel in CERTS:
        path = os.path.join(data_dir, rel)
        if not (os.path.exists(path) and os.path.exists(key_path(path))):
            continue
        cert = read_cert(path)
        with open(key_path(path), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        not_before, not_after = (t - days * DAY for t in cert_dates(cert))
        from cryptography import x509

        builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                   .public_key(cert.public_key()).serial_number(cert.serial_number)
                   .not_valid_before(_datetime(not_before)).not_valid_after(_datetime(not_after)))
        for ext in cert.extensions:
            builder = builder.add_extension(ext.value, critical=ext.critical)
        aged = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        _write(path, aged.public_bytes(serialization.Encoding.PEM), 0o644)
        index[rel] = {"notBefore": float(int(not_before)), "notAfter": float(int(not_after))}
        out.append(f"{rel} notAfter {iso(not_after)}")
    save_index(data_dir, index)
    return out


# -- rke2 certificate rotate | check ---------------------------------------------------------------
def present(data_dir: str) -> list[str]:
    return [rel for rel in CERTS if os.path.exists(os.path.join(data_dir, rel))]


def rotate(data_dir: str, services: list[str], log: Any) -> int:
    """Back the certificates of ``services`` (all when empty) up to ``.../tls-<unix time>`` and
    remove them: the next start issues new ones."""
    import shutil

    wanted = {SERVICE_ALIASES.get(s, s) for s in services}
    unknown = sorted(wanted - set(SERVICES))
    if unknown:
        log("fatal", f"{unknown[0]} is not a recognized service")
        return 1
    rels = [rel for rel in present(data_dir) if not wanted or CERTS[rel][3] in wanted]
    server_tls = os.path.join(data_dir, "server", "tls")
    base = server_tls if os.path.isdir(server_tls) else os.path.join(data_dir, "agent", "tls")
    backup = f"{base}-{int(time.time())}"
    log("info", f"Backing up certificates directory to {backup}")
    if os.path.isdir(server_tls):
        shutil.copytree(server_tls, backup, dirs_exist_ok=True)
    os.makedirs(backup, exist_ok=True)
    index = load_index(data_dir)
    for service in sorted({CERTS[rel][3] for rel in rels}):
        log("info", f"Rotating certificates for {service} service")
    for rel in rels:
        path = os.path.join(data_dir, rel)
        if rel.startswith("agent/"):
            os.makedirs(os.path.join(backup, "agent"), exist_ok=True)
            for p in (path, key_path(path)):
                if os.path.exists(p):
                    shutil.copy2(p, os.path.join(backup, "agent", os.path.basename(p)))
        for p in (path, key_path(path)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        index.pop(rel, None)
    save_index(data_dir, index)
    log("info", f"Successfully backed up certificates to {backup}, please restart rke2 server or agent "
        "to rotate certificates")
    return 0


def check(data_dir: str, output: str, window_days: int, log: Any) -> int:
    """``rke2 certificate check``: every certificate's file, subject, notAfter and days left."""
    now = time.time()
    rows = []
    for rel in present(data_dir):
        cert = read_cert(os.path.join(data_dir, rel))
        not_after = cert_dates(cert)[1]
        days_left = (not_after - now) / DAY
        status = "EXPIRED" if days_left < 0 else "WARNING" if days_left < window_days else "OK"
        usage = "ClientAuth" if CERTS[rel][2] == "client" else "ServerAuth"
        rows.append((rel, cert.subject.rfc4514_string(), usage, iso(not_after), f"{int(days_left)}d", status))
    if output == "table":
        table = [("FILENAME", "SUBJECT", "USAGES", "EXPIRES", "RESIDUAL TIME", "STATUS"), *rows]
        widths = [max(len(r[i]) for r in table) for i in range(6)]
        for r in table:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return 0
    for rel, subject, _, expires, left, status in rows:
        verdict = {"OK": "is ok", "WARNING": f"will expire within {window_days} days",
                   "EXPIRED": "is expired"}[status]
        log("info" if status == "OK" else "warning",
            f"{os.path.basename(rel)}: certificate {subject} {verdict}, expires at {expires} ({left} left)")
    return 0


# -- command line ---------------------------------------------------------------------------------------
def _flags(args: list[str]) -> dict[str, str]:
    flags, i = {}, 0
    while i < len(args):
        key = args[i].lstrip("-")
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            value, i = (args[i + 1] if i + 1 < len(args) else ""), i + 1
        flags[key] = value
        i += 1
    return flags


def configured_data_dir() -> str:
    """The host's data dir from config.yaml (PyYAML only when the file names one)."""
    try:
        with open(CONFIG_FILE) as f:
            text = f.read()
    except OSError:
        return DEFAULT_DATA_DIR
    if "data-dir" not in text:
        return DEFAULT_DATA_DIR
    import yaml

    data = yaml.safe_load(text) or {}
    return str(data.get("data-dir", DEFAULT_DATA_DIR)) if isinstance(data, dict) else DEFAULT_DATA_DIR


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, flags = argv[0], _flags(argv[1:])
    if command == "ensure":
        for line in ensure(flags["data-dir"], flags["role"], flags["node"], flags["address"], int(flags["window"])):
            print(REPORT + line, flush=True)
        return 0
    if command == "age":
        for line in age(flags.get("data-dir") or configured_data_dir(), float(flags["days"])):
            print(line)
        return 0
    print(f"rke2_certs.py: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
