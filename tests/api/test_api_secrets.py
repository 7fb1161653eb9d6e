"""Secret-looking values in bad input never reach error text (models, manifest check, CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet.api import SpecError, parse_cluster_spec, parse_node_spec
from rke2fleet.api.manifests import validate_text

from .conftest import mutate, run_cli

SECRET = "K10" + "3f" * 32 + "::server:SuperSecretPassw0rd"
PASSWORD = "SuperSecretPassw0rd"

# Each puts the secret where a rule fails, so an error is reported next to it.
PLACEMENTS: list[tuple[str, str, dict[str, Any]]] = [
    ("server-config-token", "cluster", {"spec.serverConfig.token": SECRET}),
    ("agent-config-agent-token", "cluster", {"spec.agentConfig.agent-token": SECRET}),
    ("unknown-key-value", "cluster", {"spec.serverConfig.tokn": SECRET}),
    ("server-only-on-agent", "cluster", {"spec.agentConfig.etcd-s3-secret-key": SECRET}),
    ("nested-config-value", "cluster", {"spec.serverConfig.kube-apiserver-arg": [{"x": SECRET}]}),
    ("as-version", "cluster", {"spec.version": SECRET}),
    ("as-registration-address", "cluster", {"spec.registrationAddress": SECRET}),
    ("as-tls-san", "cluster", {"spec.tlsSAN": [SECRET]}),
    ("as-secret-name", "cluster", {"spec.tokenSecretRef.name": SECRET}),
    ("as-ssh-user", "cluster", {"spec.ssh.user": SECRET}),
    ("as-port", "cluster", {"spec.ssh.port": SECRET}),
    ("as-policy", "cluster", {"spec.ssh.hostKeyPolicy": SECRET}),
    ("as-duration", "cluster", {"spec.upgrade.drainTimeout": SECRET}),
    ("as-unknown-field", "cluster", {"spec.token": SECRET}),
    ("node-config-token", "agent", {"spec.config.token": SECRET}),
    ("as-host-key", "server", {"spec.hostKey": "ssh-ed25519 " + SECRET}),
    ("as-label", "server", {"spec.nodeLabels": [f"token={SECRET}"]}),
    ("as-taint", "server", {"spec.nodeTaints": [f"token={SECRET}:NoSchedul"]}),
    ("as-node-ip", "server", {"spec.nodeIP": SECRET}),
    ("as-address", "agent", {"spec.address": SECRET}),
]


@pytest.mark.parametrize(("case_id", "base", "edits"), PLACEMENTS, ids=[p[0] for p in PLACEMENTS])
def test_models_do_not_echo_secrets(case_id: str, base: str, edits: dict[str, Any]) -> None:
    doc = mutate(base, edits)
    parse = parse_cluster_spec if base == "cluster" else parse_node_spec
    with pytest.raises(SpecError) as info:
        parse(doc["spec"])
    text = str(info.value) + repr(info.value.errors)
    assert PASSWORD not in text


def test_cli_does_not_echo_secrets(tmp_path: Path) -> None:
    args = []
    for case_id, base, edits in PLACEMENTS:
        path = tmp_path / f"{case_id}.yaml"
        path.write_text(yaml.safe_dump(mutate(base, edits)))
        args += ["-f", str(path)]
    result = run_cli("validate", *args)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) > len(PLACEMENTS)  # one error per file, plus the summary
    assert PASSWORD not in result.stderr + result.stdout


def test_yaml_errors_do_not_quote_the_source() -> None:
    # An unterminated quote: PyYAML's default message would print the offending line.
    text = f'apiVersion: rke2fleet.io/v1alpha1\nkind: RKE2Cluster\nspec:\n  serverConfig: {{token: "{SECRET}\n'
    lines = validate_text(text, "m.yaml")
    assert len(lines) == 1 and lines[0].startswith("m.yaml: YAML syntax error at line")
    assert PASSWORD not in lines[0]


def test_cli_yaml_error_from_stdin_is_clean() -> None:
    result = run_cli("validate", "-f", "-", stdin=f"a: [1, {SECRET}\nb: c\n")
    assert result.returncode == 1
    assert result.stderr.startswith("<stdin>: YAML syntax error")
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr
