"""The leaf certificates of a sandbox RKE2 node: issued at its first start, renewed at a start inside
the renewal window, rotated and checked by ``rke2 certificate``, aged by the sandbox's fault switch.

Real X.509 certificates (EC P-256, 365 days) made with ``cryptography``, each signed by the host's
client or server CA (``rke2-client-ca@<unix time>``, ``rke2-server-ca@...``, 10 years, kept in
``<data-dir>/.sandbox-ca``) and written with that CA after it, as RKE2's files hold the chain.
``cryptography`` is imported only where certificates are made or read: a plain restart reads the
small JSON index (``<data-dir>/.sandbox-certificates.json``, each certificate's notBefore/notAfter)
and nothing else.
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
CA_DIR = ".sandbox-ca"
LIFETIME_DAYS = 365
CA_LIFETIME_DAYS = 3650  # k3s: certutil's self-signed CAs, 10 years
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


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
    return pem


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption())
    return pem


def ca_path(data_dir: str, rel: str) -> str:
    """The CA that signs the certificate ``rel``: the client CA for client certificates, else the server CA."""
    return os.path.join(data_dir, CA_DIR, f"{'client' if CERTS[rel][2] == 'client' else 'server'}-ca.crt")


def ca(data_dir: str, rel: str, now: float) -> tuple[Any, Any]:
    """(certificate, key) of the CA that signs ``rel``, made at first use."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    path = ca_path(data_dir, rel)
    kind = os.path.basename(path).removesuffix("-ca.crt")
    if os.path.exists(path) and os.path.exists(key_path(path)):
        with open(key_path(path), "rb") as f:
            return read_certs(path)[0], serialization.load_pem_private_key(f.read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rke2-{kind}-ca@{int(now)}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_datetime(now))
            .not_valid_after(_datetime(now + CA_LIFETIME_DAYS * DAY))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path(path), _key_pem(key), 0o600)
    _write(path, _cert_pem(cert), 0o644)
    return cert, key


def issue(data_dir: str, rel: str, node: str, address: str, now: float) -> tuple[float, float]:
    """A new key and a certificate signed by the host's CA, valid from ``now`` for 365 days, written
    with the CA after it: (notBefore, notAfter)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    common_name, org, usage, _ = CERTS[rel]
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name.format(node=node))]
    if org:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    subject = x509.Name(attributes)
    ca_cert, ca_key = ca(data_dir, rel, now)
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = float(int(now)), float(int(now + LIFETIME_DAYS * DAY))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
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
    cert = builder.sign(ca_key, hashes.SHA256())
    path = os.path.join(data_dir, rel)
    _write(key_path(path), _key_pem(key), 0o600)
    _write(path, _cert_pem(cert) + _cert_pem(ca_cert), 0o644)
    return not_before, not_after


def read_certs(path: str) -> list[Any]:
    """Every certificate of a PEM file, the leaf first (what k3s's ``certutil.CertsFromFile`` reads)."""
    from cryptography import x509

    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


def read_cert(path: str) -> Any:
    return read_certs(path)[0]


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
    """Move notBefore and notAfter of every leaf certificate ``days`` back (re-signed by its CA, the
    chain kept; the index updated). The CAs keep their dates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    index = load_index(data_dir)
    out = []
    for rel in CERTS:
        path = os.path.join(data_dir, rel)
        if not (os.path.exists(path) and os.path.exists(key_path(path))):
            continue
        cert, *chain = read_certs(path)
        ca_key = key_path(ca_path(data_dir, rel))
        signer = ca_key if chain and os.path.exists(ca_key) else key_path(path)
        with open(signer, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        not_before, not_after = (t - days * DAY for t in cert_dates(cert))
        builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                   .public_key(cert.public_key()).serial_number(cert.serial_number)
                   .not_valid_before(_datetime(not_before)).not_valid_after(_datetime(not_after)))
        for ext in cert.extensions:
            builder = builder.add_extension(ext.value, critical=ext.critical)
        aged = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        _write(path, b"".join(_cert_pem(c) for c in (aged, *chain)), 0o644)
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


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SECOND_NS = 10**9
DAY_NS = 86400 * SECOND_NS
# go-humanize's defaultMagnitudes (Month 30 days, Year 12 months): (below, format, divisor), in ns.
MAGNITUDES: tuple[tuple[float, str, int], ...] = (
    (SECOND_NS, "now", SECOND_NS), (2 * SECOND_NS, "1 second %s", 1), (60 * SECOND_NS, "%d seconds %s", SECOND_NS),
    (120 * SECOND_NS, "1 minute %s", 1), (3600 * SECOND_NS, "%d minutes %s", 60 * SECOND_NS),
    (7200 * SECOND_NS, "1 hour %s", 1), (DAY_NS, "%d hours %s", 3600 * SECOND_NS), (2 * DAY_NS, "1 day %s", 1),
    (7 * DAY_NS, "%d days %s", DAY_NS), (14 * DAY_NS, "1 week %s", 1), (30 * DAY_NS, "%d weeks %s", 7 * DAY_NS),
    (60 * DAY_NS, "1 month %s", 1), (360 * DAY_NS, "%d months %s", 30 * DAY_NS), (540 * DAY_NS, "1 year %s", 1),
    (720 * DAY_NS, "2 years %s", 1), (37 * 360 * DAY_NS, "%d years %s", 360 * DAY_NS),
    (float("inf"), "a long while %s", 1),
)


def rel_time(ns: int) -> str:
    """``humanize.RelTime(now, now.Add(d), "", "")`` as k3s's table calls it: "1 year ", "2 months "
    (the empty label leaves the trailing space), the same for a negative ``d``."""
    diff = abs(ns)
    fmt, div = next((fmt, div) for below, fmt, div in MAGNITUDES if below > diff)
    return fmt.replace("%d", str(diff // div)).replace("%s", "")


def go_expires(t: float) -> str:
    """Go's ``Format("Jan 02, 2006 15:04 MST")`` of a UTC time."""
    tm = time.gmtime(t)
    return f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:02d}, {tm.tm_year} {tm.tm_hour:02d}:{tm.tm_min:02d} UTC"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: "8759h59m59.5s", "1.5ms", "0s"."""
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns == 0:
        return "0s"
    if ns < SECOND_NS:
        unit, div = ("ns", 1) if ns < 1000 else ("µs", 1000) if ns < 10**6 else ("ms", 10**6)
        whole, frac = divmod(ns, div)
        digits = len(str(div)) - 1
        tail = f".{frac:0{digits}d}".rstrip("0").rstrip(".") if digits else ""
        return f"{sign}{whole}{tail}{unit}"
    seconds, frac = divmod(ns, SECOND_NS)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    tail = f".{frac:09d}".rstrip("0").rstrip(".")
    return sign + (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}{tail}s"


def cert_status(cert: Any, now: float, window_days: int) -> str:
    """k3s's util.GetCertStatus, the warning window being the release's renewal window."""
    not_before, not_after = cert_dates(cert)
    if now < not_before:
        return "NOT YET VALID"
    if now > not_after:
        return "EXPIRED"
    return "WARNING" if now + window_days * DAY > not_after else "OK"


def cert_usages(cert: Any) -> list[str]:
    """k3s's util.GetCertUsages: CertSign (key usage), then ServerAuth / ClientAuth (extended)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    usages = []
    try:
        if cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            usages.append("CertSign")
    except x509.ExtensionNotFound:
        pass
    try:
        for oid in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value:
            if oid == ExtendedKeyUsageOID.SERVER_AUTH:
                usages.append("ServerAuth")
            elif oid == ExtendedKeyUsageOID.CLIENT_AUTH:
                usages.append("ClientAuth")
    except x509.ExtensionNotFound:
        pass
    return usages or ["Unknown"]


def cn_of(name: Any) -> str:
    from cryptography.x509.oid import NameOID

    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else ""


def certificate_info(data_dir: str, window_days: int) -> list[dict[str, Any]]:
    """k3s's collectCertInfo: one entry per certificate of every file (the leaf, then its CA)."""
    now_ns = time.time_ns()
    now = now_ns / SECOND_NS
    entries = []
    for rel in present(data_dir):
        for cert in read_certs(os.path.join(data_dir, rel)):
            not_before, not_after = cert_dates(cert)
            status = cert_status(cert, now, window_days)
            entries.append({
                "Filename": os.path.basename(rel),
                "Subject": cn_of(cert.subject),
                "Issuer": cn_of(cert.issuer),
                "Usages": cert_usages(cert),
                "ExpiryTime": not_before if status == "NOT YET VALID" else not_after,
                "ResidualTime": int(not_after) * SECOND_NS - now_ns,
                "Status": status,
            })
    return entries


def check(data_dir: str, output: str, window_days: int, log: Any) -> int:
    """``rke2 certificate check [--output text|table|json|yaml]``, as k3s pkg/cli/cert/cert.go prints it."""
    import json

    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import standin_common as common
    else:
        import standin_common as common

    if output not in ("text", "table", "json", "yaml"):
        log("fatal", f"invalid output format {output}")
        return 1
    if os.path.isdir(os.path.join(data_dir, "server")):
        log("info", "Server detected, checking agent and server certificates")
    else:
        log("info", "Agent detected, checking agent certificates")
    entries = certificate_info(data_dir, window_days)
    if output == "table":
        rows = [("FILENAME", "SUBJECT", "USAGES", "EXPIRES", "RESIDUAL TIME", "STATUS"),
                ("--------", "-------", "------", "-------", "-------------", "------")]
        rows += [(e["Filename"], e["Subject"], ",".join(e["Usages"]), go_expires(e["ExpiryTime"]),
                  rel_time(e["ResidualTime"]), e["Status"]) for e in entries]
        print("\n" + "\n".join(common.tabwrite(rows, padding=3)))
    elif output == "json":
        doc = [dict(e, ExpiryTime=iso(e["ExpiryTime"])) for e in entries]
        print(json.dumps({"Certificates": doc or None}, separators=(",", ":")))
    elif output == "yaml":
        lines = ["certificates:" + ("" if entries else " []")]
        for e in entries:
            lines += [f"- filename: {e['Filename']}", f"  subject: {e['Subject']}", f"  issuer: {e['Issuer']}",
                      "  usages:", *(f"  - {u}" for u in e["Usages"]), f"  expirytime: {iso(e['ExpiryTime'])}",
                      f"  residualtime: {go_duration(e['ResidualTime'])}", f"  status: {e['Status']}"]
        print("\n".join(lines))
    else:
        for e in entries:
            what = f"{e['Filename']}: certificate {e['Subject']} ({','.join(e['Usages'])})"
            expires = iso(e["ExpiryTime"])
            level, verdict = {"NOT YET VALID": ("error", f"is not valid before {expires}"),
                              "EXPIRED": ("error", f"expired at {expires}"),
                              "WARNING": ("warning", f"will expire within {window_days} days at {expires}"),
                              }.get(e["Status"], ("info", f"is ok, expires at {expires}"))
            log(level, f"{what} {verdict}")
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
