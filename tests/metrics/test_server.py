from __future__ import annotations

import urllib.request

from rke2fleet import metrics


def test_endpoint_serves_the_private_registry_and_stops() -> None:
    metrics.set_node_state("srv-test", "c", "n", "agent", True, "v1.36.3+rke2r1", "v1.36.3+rke2r1")
    server = metrics.start_metrics_server(0, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server()
    assert 'rke2fleet_node_ready{cluster="c",namespace="srv-test",node="n",role="agent"} 1.0' in body
    assert "process_cpu_seconds_total" in body or "python_info" in body
    # Nothing from prometheus_client's global registry beyond what we registered ourselves.
    assert body.count("# TYPE python_info") <= 1
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("server still answering after stop")
