"""Shards: a stable split of the clusters (with everything that names them) across processes."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from rke2fleet import config
from rke2fleet.handlers.shards import mine, parse_shard, shard_of

CLUSTERS = SimpleNamespace(plural="rke2clusters")
NODES = SimpleNamespace(plural="rke2nodes")


def test_the_split_is_stable_and_even() -> None:
    assert shard_of("fleet", "prod", 3) == shard_of("fleet", "prod", 3)  # sha256, not Python's hash()
    assert shard_of("fleet", "prod", 3) == 0  # fixed forever: a release must not move clusters
    counts = Counter(shard_of("fleet", f"c{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3} and all(900 < n < 1100 for n in counts.values())


def test_a_node_snapshot_or_restore_goes_where_its_cluster_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    owner = shard_of("fleet", "prod", 2)
    for index in (0, 1):
        monkeypatch.setattr(config, "SETTINGS", config.Settings(shard_index=index, shard_count=2))
        ours = index == owner
        assert mine(namespace="fleet", name="prod", spec={}, resource=CLUSTERS) is ours
        assert mine(namespace="fleet", name="prod-s1", spec={"cluster": "prod"}, resource=NODES) is ours
    monkeypatch.setattr(config, "SETTINGS", config.Settings())
    assert mine(namespace="fleet", name="x", spec={"cluster": "y"}, resource=NODES)  # one shard: everything


@pytest.mark.parametrize("text", ["", "1", "2/2", "-1/2", "a/b", "0/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        parse_shard(text)
    assert parse_shard("1/3") == (1, 3)
