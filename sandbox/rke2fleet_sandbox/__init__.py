"""The sandbox world: sshd hosts in namespaces with RKE2 stand-ins, installer endpoint, load
balancer, fault switches and the Kubernetes API emulator. Entry point: `Sandbox.up(...)`."""

from rke2fleet_sandbox.hosts import SandboxError, run_on_host
from rke2fleet_sandbox.state import DEFAULT_STATE_DIR, SandboxHost
from rke2fleet_sandbox.world import Sandbox

__all__ = ["DEFAULT_STATE_DIR", "Sandbox", "SandboxError", "SandboxHost", "run_on_host"]
