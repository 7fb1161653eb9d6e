"""The Kopf floor must stay what it claims: the operator's Kopf settings and index shapes, none
of its logic. Compared against the real `runner.configure` and `handlers.indexes`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import logging
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "fleetbench" / "kopf_floor_operator.py"


@pytest.fixture(scope="module")
def floor() -> Any:
    return SimpleNamespace(**runpy.run_path(str(FLOOR)))  # its handlers, as `kopf run` loads them


def comparable(value: Any) -> Any:
    """Settings as plain data: dataclasses by field, storages by type and attributes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: comparable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, concurrent.futures.Executor):
        return type(value).__name__
    if hasattr(value, "__dict__") and type(value).__eq__ is object.__eq__:  # type: ignore[comparison-overlap]
        return type(value).__name__, {k: comparable(v) for k, v in vars(value).items()}
    return value


async def test_floor_has_the_operators_kopf_settings(floor: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from rke2fleet.handlers import runner, shards

    kubeconfig = tmp_path / "kubeconfig"  # KubeApi() reads it; nothing is contacted
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))  # read at import
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("RKE2FLEET_METRICS_PORT", raising=False)
    ours, theirs = kopf.OperatorSettings(), kopf.OperatorSettings()
    memo = SimpleNamespace()
    configure: Any = runner.configure  # Kopf's decorators type it as its callback protocol
    shutdown: Any = runner.shutdown
    await configure(settings=ours, memo=memo, logger=SimpleNamespace(info=lambda *a: None))
    await shutdown(memo=memo)
    await floor.configure(settings=theirs)
    assert comparable(theirs) == comparable(ours)
    assert theirs.persistence.finalizer == shards.FINALIZER
    assert comparable(kopf.OperatorSettings()) != comparable(ours)  # the comparison sees a difference


def test_floor_indexes_give_the_operators_entries(floor: Any) -> None:
    from rke2fleet.handlers import indexes as ours

    indexes: Any = ours  # Kopf's decorators type the index functions as its callback protocol

    meta = {"generation": 3, "deletionTimestamp": None}
    spec = {"cluster": "c1", "role": "agent", "address": "10.0.0.9", "paused": True}
    status = {"phase": "Paused"}
    args: dict[str, Any] = dict(
        namespace="ns", name="n1", spec=spec, status=status, uid="u-1", meta=meta, body={}, memo=SimpleNamespace()
    )
    for name in ("nodes", "clusters"):
        ours_fn, floor_fn = getattr(indexes, name), getattr(floor, name)
        needed = {
            p
            for p, v in inspect.signature(ours_fn).parameters.items()
            if v.default is v.empty and v.kind == v.KEYWORD_ONLY
        }
        assert needed <= args.keys(), (
            f"the operator's {name} index now takes {needed - args.keys()}: mirror it in the floor"
        )
        # Both async alike (Kopf runs sync handlers in threads: a cost the floor must share).
        assert inspect.iscoroutinefunction(floor_fn) == inspect.iscoroutinefunction(ours_fn)
        theirs_out = asyncio.run(floor_fn(**args))
        ours_out = {key: dataclasses.asdict(record) for key, record in asyncio.run(ours_fn(**args)).items()}
        assert theirs_out == ours_out


def test_floor_paused_status_has_the_fields_our_paused_node_gets(floor: Any) -> None:
    from rke2fleet.api.conditions import Cond, status_patch

    ours = status_patch({}, 2, {"phase": "Paused"}, [Cond("Ready", False, "Paused", "cluster c1 is paused")])
    theirs = floor.paused_status(2, "c1")
    assert theirs.keys() == ours.keys()
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in theirs["conditions"]] == [
        (c["type"], c["status"], c["reason"], c["message"]) for c in ours["conditions"]
    ]
    assert [sorted(c) for c in theirs["conditions"]] == [sorted(c) for c in ours["conditions"]]


def test_floor_imports_nothing_of_rke2fleet() -> None:
    # Its RSS must be Kopf's alone (Kopf itself imports kubernetes and pydantic when installed):
    # load it in a clean interpreter and look at what got imported.
    ours = ("rke2fleet", "asyncssh", "prometheus_client")
    code = f"import runpy, sys; runpy.run_path({str(FLOOR)!r}); print([m for m in sys.modules if m.startswith({ours})])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_watch_only_mode_has_the_indexes_and_nothing_else(floor: Any) -> None:
    """The floor of any Kopf operator: the two indexes, no handler (so no finalizer, no write)."""
    code = (
        f"import runpy, kopf; ns = runpy.run_path({str(FLOOR)!r}); r = kopf.get_default_registry();"
        "print(sorted(h.id for h in r._indexing.get_all_handlers()), len(r._changing.get_all_handlers()),"
        " len(r._spawning.get_all_handlers()), ns['INDEXED_LINE'])"
    )
    env = {"PATH": "/usr/bin:/bin", "RKE2FLEET_FLOOR_WATCH_ONLY": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == f"['clusters', 'nodes'] 0 0 {floor.INDEXED_LINE}"
    # what the bench waits for (bench/fleetbench/operator_proc.py)
    assert f'INDEXED_LINE = "{floor.INDEXED_LINE}"' in (FLOOR.parent / "operator_proc.py").read_text()


def test_watch_only_mode_says_when_every_node_is_indexed(floor: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    scope = floor.nodes.__globals__  # the loaded script's globals
    monkeypatch_globals = {"EXPECTED": 2, "_seen": set()}  # as RKE2FLEET_FLOOR_EXPECT_NODES=2 sets it
    saved = {k: scope[k] for k in monkeypatch_globals}
    scope.update(monkeypatch_globals)
    try:
        for name in ("a", "b", "b", "c"):
            asyncio.run(floor.nodes(namespace="ns", name=name, spec={"cluster": "c"}, status={}, meta={}))
    finally:
        scope.update(saved)
    assert [r.getMessage() for r in caplog.records].count(floor.INDEXED_LINE) == 1
