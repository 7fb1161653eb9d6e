"""Sandbox hosts: a real OpenSSH sshd in its own mount + UTS namespace, one per node.

A host is two processes started from here: a *holder* (`unshare -m -u`, which mounts the
private filesystems and then sleeps) that keeps the namespace alive whatever happens to sshd,
and `sshd -D` entered into that namespace with `nsenter`. Everything a host runs later (ssh
sessions, the rke2 stand-in) inherits the namespace, so the namespace is how a host's
processes are found and ended.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rke2fleet_sandbox import costs, netns
from rke2fleet_sandbox.state import ProcessRecord, SandboxHost, StateLayout

# Private (tmpfs) inside every host. /run/rke2fleet is the stand-ins' runtime directory.
# /etc/systemd/system too: the real systemctl is shadowed, and unit drop-ins must not reach the machine.
PRIVATE_DIRS: tuple[str, ...] = (
    "/etc/rancher",
    "/var/lib/rancher",
    "/usr/local",
    "/run/rke2fleet",
    "/etc/systemd/system",
)
RUNTIME_DIR = "/run/rke2fleet"
# Copy-on-write per host: what a host changes there is its own (users, sysctl.d, /var/lib/<tool>).
COPY_ON_WRITE: tuple[str, ...] = ("/etc", "/var/lib")
# Bound over the machine's binary inside every host (/usr/bin/<tool> unless TOOL_DIRS says otherwise).
SHIMMED_TOOLS: tuple[str, ...] = ("systemctl", "journalctl", "sysctl")
TOOL_DIRS = {"sysctl": "/usr/sbin"}
SUDO_USER = "fleet"
BASTION_ROLE = "bastion"  # the jump host of a "bastion" network: an sshd like the hosts, no stand-ins
SSHD = "/usr/sbin/sshd"
STANDINS_DIR = Path(__file__).resolve().parent / "standins"


class SandboxError(RuntimeError):
    """A sandbox could not be brought up or driven."""


@dataclass(frozen=True)
class HostPlan:
    """What to start: decided before anything runs, so all hosts can start in parallel."""

    name: str
    role: str
    address: str
    user: str
    port: int = 22


# ---------------------------------------------------------------- keys


def generate_key(path: Path, comment: str) -> None:
    """An ed25519 key pair at `path` / `path.pub` (ssh-keygen is quick: ~5 ms)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def public_key_line(pub_path: Path) -> str:
    """`ssh-ed25519 AAAA…` without the comment: the form to pin."""
    algo, b64 = pub_path.read_text().split()[:2]
    return f"{algo} {b64}"


def host_key_path(layout: StateLayout, name: str) -> Path:
    return layout.host_dir(name) / "ssh_host_ed25519_key"


# ---------------------------------------------------------------- the non-root user


def ensure_sudo_user(user: str = SUDO_USER) -> None:
    """Create the sudo host's login user on the machine if missing.

    Its password field is `*` (no password, but not *locked*: sshd without PAM refuses
    accounts whose password starts with `!`). Passwordless sudo is granted inside the
    hosts only (a private /etc/sudoers.d), never on the machine itself.
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        entry = pwd.getpwnam(user)
    subprocess.run(["usermod", "-p", "*", user], check=True, stdout=subprocess.DEVNULL)
    Path(entry.pw_dir).mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- host files


def tool_path(tool: str) -> str:
    """Where a shimmed tool is bound inside a host."""
    return f"{TOOL_DIRS.get(tool, '/usr/bin')}/{tool}"


def shim_script(tool: str) -> bytes:
    """/usr/bin/<tool> inside a host. systemctl answers its query verbs in the shell first
    (standins/systemctl_query.sh); the rest runs the Python stand-in. With heavy stand-ins
    (`costs.heavy()`), every verb runs the Python stand-in."""
    script = STANDINS_DIR / f"{tool}.py"
    fast = STANDINS_DIR / f"{tool}_query.sh"
    source = f". {shlex.quote(str(fast))}\n" if fast.exists() and not costs.heavy() else ""
    # -S: the shimmed stand-ins are stdlib-only, and skipping site (venv .pth files) saves ~7 ms a call.
    return f'#!/bin/sh\n{source}exec {shlex.quote(sys.executable)} -S {shlex.quote(str(script))} "$@"\n'.encode()


def _etc_hosts(plans: Sequence[HostPlan], me: HostPlan) -> bytes:
    try:
        base = Path("/etc/hosts").read_text()
    except OSError:
        base = "127.0.0.1 localhost\n"
    lines = [base.rstrip("\n"), "# rke2fleet sandbox"]
    lines += [f"{p.address} {p.name}" for p in plans]
    if me.name not in {p.name for p in plans}:
        lines.append(f"{me.address} {me.name}")
    return ("\n".join(lines) + "\n").encode()


DEFAULT_NODE_READY_DELAY = 1.0
DEFAULT_LEARNER_DELAY = 1.0


def write_host_files(
    layout: StateLayout,
    plan: HostPlan,
    plans: Sequence[HostPlan],
    *,
    node_ready_delay: float = DEFAULT_NODE_READY_DELAY,
    learner_delay: float = DEFAULT_LEARNER_DELAY,
    docker_io: str | None = None,
    authorized_from: Sequence[str] = (),
) -> Path:
    """Prepare the tree copied into the host's private /run/rke2fleet; returns its path.

    `node_ready_delay`: seconds between the rke2 service being active and its Node being Ready;
    `learner_delay`: seconds before a joining server's etcd learner may be promoted;
    `docker_io`: the URL standing in for docker.io's registry (the installer endpoint's /v2/), where
    a node without an images archive pulls its runtime image; None: the sandbox has no docker.io;
    `authorized_from`: the only addresses the client key may log in from (sshd's `from=`), e.g. the
    bastion's; empty: any.
    """
    seed = layout.host_dir(plan.name) / "run"
    (seed / "bin").mkdir(parents=True, exist_ok=True)
    (seed / "ssh").mkdir(parents=True, exist_ok=True)
    (seed / "units").mkdir(parents=True, exist_ok=True)  # the stand-ins' unit state, world-readable
    host_json = {
        "name": plan.name,
        "role": plan.role,
        "address": plan.address,
        "user": plan.user,
        "stateDir": str(layout.root),
        "datastoreDir": str(layout.datastore),
        "faultsDir": str(layout.faults_dir(plan.name)),
        "python": sys.executable,
        "standinsDir": str(STANDINS_DIR),
        "nodeReadyDelay": node_ready_delay,
        "learnerPromoteDelay": learner_delay,
        "registryEndpoints": {"docker.io": docker_io} if docker_io else {},
        **costs.host_json_costs(),
    }
    files: dict[str, tuple[bytes, int]] = {
        "host.json": ((json.dumps(host_json, indent=2) + "\n").encode(), 0o644),
        "ssh/authorized_keys": (_authorized_keys(layout, authorized_from), 0o644),
        "etc-hosts": (_etc_hosts(plans, plan), 0o644),
        "empty-bashrc": (b"", 0o644),
        "sudoers": (f"{plan.user} ALL=(ALL:ALL) NOPASSWD: ALL\n".encode(), 0o440),
    }
    for tool in SHIMMED_TOOLS:
        files[f"bin/{tool}"] = (shim_script(tool), 0o755)
    for rel, (data, mode) in files.items():
        path = seed / rel
        path.write_bytes(data)
        path.chmod(mode)
    layout.faults_dir(plan.name).mkdir(parents=True, exist_ok=True)
    return seed


def _authorized_keys(layout: StateLayout, authorized_from: Sequence[str]) -> bytes:
    key = layout.client_pub.read_bytes()
    if not authorized_from:
        return key
    return f'from="{",".join(authorized_from)}" '.encode() + key


def _setup_script(plan: HostPlan, seed: Path) -> str:
    """Runs inside the new namespace (as the holder), then becomes `sleep infinity`."""
    q = shlex.quote
    run = RUNTIME_DIR
    lines = ["set -e"]
    # The runtime dir first: it also keeps the machine's originals of the other private dirs.
    lines += _private_dir(plan, run, keep=[], saved=None)
    lines.append(f"cp -a {q(str(seed))}/. {run}/")
    lines.append(f"chmod 0755 {run} {run}/ssh {run}/units")
    lines += private_system_lines(run)
    root_home = pwd.getpwnam("root").pw_dir
    private = [d for d in PRIVATE_DIRS if d != run]
    if plan.user != "root":
        # Root's home is mode 0700: a non-root `systemctl is-active` could not reach an
        # interpreter installed under it (pyenv). Give the sudo host a clean, open one.
        private.append(root_home)
    needed = _paths_the_host_needs()
    for i, d in enumerate(private):
        keep = [p for p in needed if p.startswith(d.rstrip("/") + "/")]
        lines += _private_dir(plan, d, keep=keep, saved=f"{run}/.machine/{i}")
    lines.append(f"hostname {q(plan.name)}")
    for tool in SHIMMED_TOOLS:
        target = tool_path(tool)
        lines.append(f"[ -e {target} ] || : > {target}")
        lines.append(f"mount --bind {run}/bin/{tool} {target}")
    # A minimal root (debootstrap, a slim container) may have none; /etc is this host's overlay here.
    lines.append(f"[ -e /etc/hosts ] || : > /etc/hosts; mount --bind {run}/etc-hosts /etc/hosts")
    # A clean ~/.bashrc: the machine's own (pyenv) costs ~80 ms on every ssh exec.
    homes = {root_home}
    if plan.user != "root":
        homes.add(pwd.getpwnam(plan.user).pw_dir)
        lines.append("mount -t tmpfs -o mode=0755 rke2fleet-sudoers /etc/sudoers.d")
        lines.append(f"cp {run}/sudoers /etc/sudoers.d/rke2fleet && chmod 0440 /etc/sudoers.d/rke2fleet")
    for home in sorted(homes):
        rc = q(f"{home}/.bashrc")
        # Only where one exists: never create files in the machine's home directories.
        lines.append(f"if [ -e {rc} ]; then mount --bind {run}/empty-bashrc {rc}; fi")
    lines.append("mkdir -p /run/sshd && chmod 0755 /run/sshd")
    lines.append("echo ready")
    lines.append("exec sleep infinity")
    return "\n".join(lines) + "\n"


def private_system_lines(run: str = RUNTIME_DIR) -> list[str]:
    """Shell lines (run inside the new namespace, after `run` is the host's private tmpfs) making the
    host's system state its own, never the machine's:

    * /etc and /var/lib copy-on-write: overlays whose upper layers are in `run`, so that `useradd`,
      `groupadd` (which replace /etc/passwd by rename: a bind-mounted file would refuse it),
      /etc/sysctl.d, /etc/default, whatever a tool keeps under /var/lib... change this host only.
      Mounts the machine has under them are bound back. Private dirs under them (PRIVATE_DIRS)
      are mounted later, on top.
    * kernel parameters: simulated (standins/sysctl_state.py). The keys RKE2 checks are seeded with
      the machine's values and bound over their /proc/sys files; the rest of /proc/sys is read-only.
    """
    from rke2fleet_sandbox.standins import sysctl_state

    q = shlex.quote
    lines: list[str] = []
    for tree in COPY_ON_WRITE:
        saved = f"{run}/.cow{tree.replace('/', '-')}"
        lines.append(f"mkdir -p {saved}/upper {saved}/work && chmod 0700 {saved}")
        submounts = _submounts(tree)
        if submounts:
            lines.append(f"mkdir -p {saved}/machine && mount --rbind {tree} {saved}/machine")
        lines.append(f"mount -t overlay rke2fleet-cow -o lowerdir={tree},upperdir={saved}/upper,"
                     f"workdir={saved}/work {tree}")
        for path in submounts:
            lines.append(f"mount --bind {q(saved + '/machine/' + os.path.relpath(path, tree))} {q(path)}")
    state = f"{run}/proc-sys"
    for key in sysctl_state.SIMULATED:
        rel = sysctl_state.key_path(key)
        lines.append(f"if [ -f /proc/sys/{rel} ]; then mkdir -p {os.path.dirname(f'{state}/{rel}')} && "
                     f"cat /proc/sys/{rel} > {state}/{rel}; fi")
    lines.append("mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys")
    for key in sysctl_state.SIMULATED:
        rel = sysctl_state.key_path(key)
        lines.append(f"if [ -f {state}/{rel} ]; then mount --bind {state}/{rel} /proc/sys/{rel}; fi")
    return lines


def _submounts(tree: str) -> list[str]:
    """Mount points below `tree` in this mount namespace (a container's /etc/hosts, /etc/resolv.conf)."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(tree + "/"):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found))


def _private_dir(plan: HostPlan, directory: str, keep: Sequence[str], saved: str | None) -> list[str]:
    """Shell lines mounting an empty tmpfs over `directory`, then binding back the `keep` paths
    (from the machine's original, first bound at `saved`)."""
    q = shlex.quote
    # The mount point itself must exist on the machine; only its content is private.
    lines = [f"mkdir -p {q(directory)}"]
    if keep and saved:
        lines.append(f"mkdir -p {q(saved)} && chmod 0700 {q(saved)} && mount --bind {q(directory)} {q(saved)}")
    lines.append(f"mount -t tmpfs -o mode=0755 {q('rke2fleet-' + plan.name)} {q(directory)}")
    for path in keep:
        source = q(saved + "/" + os.path.relpath(path, directory)) if saved else ""
        make = f"mkdir -p {q(path)}" if os.path.isdir(path) else f"mkdir -p {q(os.path.dirname(path))} && : > {q(path)}"
        lines.append(f"{make} && mount --bind {source} {q(path)}")
    return lines


def _symlink_hop_dirs(path: str) -> list[str]:
    """The directory of every link on the way from `path` to the file (venv python -> pyenv's
    python3 -> python3.11): each hop must resolve inside the host too."""
    dirs = []
    for _ in range(40):
        dirs.append(os.path.realpath(os.path.dirname(path)))
        if not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return dirs


def _paths_the_host_needs() -> list[str]:
    """What the stand-in shims run: the interpreter, its standard library, libpython, the venv
    and the package. Bound back into a private dir (or root's home) that would hide them."""
    paths = {
        *_symlink_hop_dirs(sys.executable),
        sysconfig.get_path("stdlib"),
        sysconfig.get_path("platstdlib"),
        str(STANDINS_DIR.parent.parent),  # the source root (or site-packages) holding `rke2fleet_sandbox`
    }
    if sys.prefix != sys.base_prefix:
        paths.add(sys.prefix)
    libdir, ldlibrary = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and ldlibrary:
        paths.add(os.path.join(libdir, ldlibrary))
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    # Drop paths inside another kept path: one bind mount covers them.
    return [p for p in real if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in real)]


# ---------------------------------------------------------------- processes


def start_holder(
    layout: StateLayout, plan: HostPlan, seed: Path, *, netns_pid: int | None = None, new_netns: bool = False
) -> subprocess.Popen[bytes]:
    """The host's namespace holder. `netns_pid`: enter that process's network namespace first (a
    site's); `new_netns`: the host gets a network namespace of its own (the bastion)."""
    argv = ["unshare", "-m", "-u", *(["-n"] if new_netns else []), "--propagation", "private"]
    if netns_pid is not None:
        argv = ["nsenter", "-t", str(netns_pid), "-n", "--", *argv]
    with open(layout.logs / f"{plan.name}.holder.log", "ab") as log:
        return subprocess.Popen(
            [*argv, "--", "sh", "-c", _setup_script(plan, seed)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )


def said_ready(proc: subprocess.Popen[bytes]) -> bool:
    """Read the child's first stdout line: `ready`, or it failed (then it is reaped)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    if line.strip() == b"ready":
        return True
    proc.wait(timeout=5)
    return False


def await_holder(proc: subprocess.Popen[bytes], name: str) -> str:
    """Wait for the holder's `ready`; returns its mount namespace link."""
    if not said_ready(proc):
        raise SandboxError(f"host {name}: namespace setup failed (see logs/{name}.holder.log)")
    ns = mount_namespace(proc.pid)
    if ns is None or ns == mount_namespace(os.getpid()):
        raise SandboxError(f"host {name}: holder has no private mount namespace")
    return ns


def sshd_argv(layout: StateLayout, plan: HostPlan, *, sftp: bool = True) -> list[str]:
    opts = {
        "ListenAddress": plan.address,
        "Port": str(plan.port),
        "HostKey": str(host_key_path(layout, plan.name)),
        "AuthorizedKeysFile": f"{RUNTIME_DIR}/ssh/authorized_keys",
        "PermitRootLogin": "no" if plan.user != "root" else "prohibit-password",
        "AllowUsers": plan.user,
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "StrictModes": "no",
        "UsePAM": "no",
        "UseDNS": "no",
        "PrintMotd": "no",
        "PrintLastLog": "no",
        "PidFile": "none",
    }
    if sftp:
        opts["Subsystem"] = "sftp internal-sftp"
    if plan.role == BASTION_ROLE:
        # A jump host: forwarding on, and a log line for each login and each direct-tcpip channel.
        opts["AllowTcpForwarding"] = "yes"
        opts["LogLevel"] = "VERBOSE"
        opts["LogVerbose"] = "*:server_request_direct_tcpip():*"
    argv = [SSHD, "-D", "-e", "-f", "/dev/null"]
    for key, value in opts.items():
        argv += ["-o", f"{key}={value}"]
    return argv


def start_sshd(layout: StateLayout, host: SandboxHost) -> subprocess.Popen[bytes]:
    plan = HostPlan(host.name, host.role, host.address, host.user, host.port)
    with open(layout.logs / f"{host.name}.sshd.log", "ab") as log:
        return subprocess.Popen(
            [*enter_argv(host), *sshd_argv(layout, plan, sftp=host.sftp)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def enter_argv(host: SandboxHost) -> list[str]:
    """`nsenter` into the host: its mounts and hostname, and its network namespace when it has one."""
    return ["nsenter", "-t", str(host.pid), "-m", "-u", *(["-n"] if host.net_ns else []), "--"]


def reach_from(host: SandboxHost) -> int | None:
    """Where this process connects to the host's sshd from: here (None), unless the host is behind
    a jump host; then from inside its network namespace (the pid of its holder)."""
    return host.pid if host.via else None


def wait_listening(
    address: str,
    port: int,
    deadline: float,
    proc: subprocess.Popen[bytes] | None = None,
    netns_pid: int | None = None,
) -> None:
    """Poll until a TCP connect succeeds and the SSH banner comes, or raise at the deadline.

    `netns_pid`: connect from that process's network namespace (a host behind a bastion, which
    the root namespace cannot reach)."""
    while True:
        if proc is not None and proc.poll() is not None:
            raise SandboxError(f"sshd on {address}:{port} exited with {proc.returncode}")
        try:
            with netns.connect(address, port, 0.5, netns_pid) as sock:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SandboxError(f"nothing answers SSH on {address}:{port}")
        time.sleep(0.02)


def mount_namespace(pid: int) -> str | None:
    return netns.namespace_of(pid, "mnt")


def pids_in_namespaces(namespaces: Iterable[str]) -> dict[str, list[int]]:
    """Every live process of each given mount namespace (by `/proc/<pid>/ns/mnt`)."""
    return netns.pids_in(namespaces, "mnt")


def owns_namespace(host: SandboxHost) -> bool:
    """True while the host's holder (or else its recorded sshd) still lives in the recorded namespace.

    Namespace inodes are recycled once a namespace dies: a bare `mnt:[N]` may by now be another
    sandbox's host. A live process of ours inside it proves it is still ours.
    """
    return _anchor(host) is not None


def _anchor(host: SandboxHost) -> ProcessRecord | None:
    for record in (host.holder, host.sshd):
        if record is not None and record.alive() and mount_namespace(record.pid) == host.mnt_ns:
            return record
    return None


def signal_namespace(host: SandboxHost, sig: int) -> list[int]:
    if not owns_namespace(host):
        raise SandboxError(f"host {host.name} is not running")
    pids = pids_in_namespaces([host.mnt_ns])[host.mnt_ns]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def end_hosts(hosts: Sequence[SandboxHost], timeout: float = 5.0) -> list[int]:
    """SIGKILL every process of the hosts (stopped ones too) until none is left.

    The anchor (holder) of each host dies last: while it lives, the namespace cannot be
    recycled, so everything found in it is ours. Loops because a process may fork while its
    siblings are killed. Returns the pids still alive at the timeout (empty on success).
    """
    anchors = {h.mnt_ns: a for h in hosts if h.mnt_ns and (a := _anchor(h)) is not None}
    deadline = time.monotonic() + timeout
    killed: list[ProcessRecord] = []
    while True:
        found = pids_in_namespaces(anchors)
        left = [pid for ns, pids in found.items() for pid in pids if pid != anchors[ns].pid]
        if not left:
            break
        if time.monotonic() > deadline:
            return left
        killed += [ProcessRecord.of(pid) for pid in left]
        _kill_all(left)
        time.sleep(0.01)
    _kill_all([a.pid for a in anchors.values() if a.alive()])
    # A dying process leaves its namespaces before it is gone: wait for every one to be gone.
    killed += anchors.values()
    while alive := [rec.pid for rec in killed if rec.alive()]:
        if time.monotonic() > deadline:
            return alive
        time.sleep(0.01)
    return []


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_process(record: ProcessRecord, sig: int = signal.SIGTERM, timeout: float = 3.0) -> None:
    """Signal a recorded process (only if it is still the same process) and wait for it to go."""
    if not record.alive():
        return
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while record.alive():
        if time.monotonic() > deadline:
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout
        time.sleep(0.02)


def run_on_host(
    host: SandboxHost, shell_cmd: str, *, timeout: float = 30.0, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `sh -c shell_cmd` inside the host (its mounts, hostname and network) without ssh."""
    return subprocess.run(
        [*enter_argv(host), "sh", "-c", shell_cmd],
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
