"""Issue 18 through the wire: GET /metrics read by the Prometheus project's own parser
(prometheus_client), and a sandbox's lifecycle events as E2B's logs (v1 and v2)."""
import json
import os
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BASE = os.environ["E2B_API_URL"]
KEY = os.environ["E2B_API_KEY"]


def get(path):
    req = urllib.request.Request(f"{BASE}{path}", headers={"X-API-KEY": KEY})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def test_metrics_parse_with_the_prometheus_parser(sandboxes):
    sbx = sandboxes.create(metadata={"suite": "observability"})
    sbx.pause()
    sbx.connect()
    families = {f.name: f for f in text_string_to_metric_families(get("/metrics"))}
    for name in ["stasis_sandboxes", "stasis_sandbox_operations", "stasis_sandbox_operation_duration_seconds",
                 "stasis_pause_phase_duration_seconds", "stasis_checkpoint_bytes", "stasis_lifecycle_actions",
                 "stasis_lifecycle_failed_actions", "stasis_proxy_requests", "stasis_proxy_bytes",
                 "stasis_proxy_open_connections", "stasis_host_memory_bytes", "stasis_host_disk_bytes",
                 "stasis_host_cpus"]:
        assert name in families, sorted(families)
    pauses = [s for s in families["stasis_sandbox_operations"].samples
              if s.name == "stasis_sandbox_operations_total" and s.labels == {"operation": "pause"}]
    assert pauses and pauses[0].value >= 1, pauses
    running = [s for s in families["stasis_sandboxes"].samples if s.labels.get("state") == "running"]
    assert sum(s.value for s in running) >= 1, running


def test_logs_v1_and_v2_tell_what_happened(sandboxes):
    sbx = sandboxes.create()
    sbx.pause()
    sbx.connect()
    v2 = json.loads(get(f"/v2/sandboxes/{sbx.sandbox_id}/logs"))["logs"]
    messages = [l["message"] for l in v2]
    assert messages[0].startswith("created from template base"), messages
    assert messages[1].startswith("paused (asked by the API) in"), messages
    assert messages[2].startswith("resumed (connect (API)) in"), messages
    assert all(l["level"] == "info" and l["timestamp"].endswith("Z") for l in v2), v2
    v1 = json.loads(get(f"/sandboxes/{sbx.sandbox_id}/logs"))
    assert [l["line"] for l in v1["logs"]] == messages
    assert v1["logEntries"][1]["fields"]["event"] == "paused"
