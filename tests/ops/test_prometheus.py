"""The monitoring files checked by the real thing: Debian's Prometheus and promtool.

- ``promtool check rules`` / ``check config`` accept deploy/prometheus/alerts.yml and
  deploy/prometheus.yml (as shipped, and rewritten to the loopback targets used here);
- ``promtool test rules`` runs tests/ops/alert_cases.yml: every alert fires on the
  synthetic series made for it, and none fires on healthy ones;
- a real Prometheus on loopback scrapes a real ``pulse demo`` (processor) and a real
  ``pulse serve`` (server, reading the demo's store) every second, and its query API shows
  the key series exist and move, both jobs up, the rules loaded and evaluating without
  error (the dead-letter alert goes pending on the demo's malformed records), and every
  query of the Grafana dashboard accepted.

Prometheus missing is a failure, not a skip: ``make ops-deps`` installs it.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml

from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from pulse.buildinfo import build_labels
from tests.ops.processes import REPO, Process, free_port, start_demo, start_serve, wait_for

PROMETHEUS_YML = REPO / "deploy" / "prometheus.yml"
ALERTS_YML = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_CASES = Path(__file__).with_name("alert_cases.yml")
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "pulse.json"
JOBS = ("pulse-processor", "pulse-server")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: these tests need Debian's prometheus package "
                    "(prometheus, promtool). Run `make ops-deps` (apt-get install prometheus).")
    return path


def promtool(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def alert_names() -> set[str]:
    rules = yaml.safe_load(ALERTS_YML.read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def loopback_config(tmp: Path, targets: dict[str, str]) -> Path:
    """deploy/prometheus.yml with 1 s scrapes and evaluations, targets on loopback, and the
    repository's alert rules by absolute path."""
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(ALERTS_YML)]
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert set(jobs) == set(JOBS), f"deploy/prometheus.yml scrape jobs changed: {sorted(jobs)}"
    for name, target in targets.items():
        jobs[name]["static_configs"] = [{"targets": [target]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def host_port(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


# --- promtool, no running processes ----------------------------------------------------

def test_promtool_accepts_the_rules_and_the_shipped_config():
    out = promtool("check", "rules", str(ALERTS_YML))
    assert f"SUCCESS: {len(alert_names())} rules found" in out
    # As shipped (compose targets; rule file relative to the config file).
    out = promtool("check", "config", str(PROMETHEUS_YML))
    assert "SUCCESS: 1 rule files found" in out


def test_promtool_accepts_the_loopback_config(tmp_path):
    config = loopback_config(tmp_path, {"pulse-processor": "127.0.0.1:1", "pulse-server": "127.0.0.1:2"})
    assert "is valid prometheus config file syntax" in promtool("check", "config", str(config))


def test_every_alert_fires_on_its_case_and_stays_quiet_on_healthy_series(tmp_path):
    # promtool compares annotations verbatim, so the cases run against the rules without
    # them (their templates were checked by `check rules` above).
    rules = yaml.safe_load(ALERTS_YML.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    cases = yaml.safe_load(ALERT_CASES.read_text())
    cases["rule_files"] = ["rules.yml"]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump(cases, sort_keys=False))
    assert "SUCCESS" in promtool("test", "rules", "cases.yml", cwd=tmp_path)

    fired = {case["alertname"] for test in cases["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == alert_names(), f"alerts without a firing case: {sorted(alert_names() - fired)}"


# --- a real Prometheus scraping real Pulse processes -----------------------------------

class Prometheus:
    def __init__(self, config: Path, storage: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process([tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={storage}",
                                f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
                                "--log.level=warn"])
        wait_for(self._ready, 60, f"Prometheus to be ready on {self.url}")

    def _ready(self) -> bool:
        if self.process.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.process.proc.returncode}:\n{self.process.output(3000)}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with Prometheus's reason
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.stop(signal.SIGTERM, timeout=20)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """pulse demo + pulse serve on the same state dir + Prometheus scraping both."""
    tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus-stack")
    started: list = []
    try:
        # Half the records malformed: each dead-letter reason is well above the alert's 5 %.
        demo, _demo_grpc, processor_url = start_demo(
            tmp / "state", PULSE_GENERATOR_EVENTS_PER_SECOND="400", PULSE_GENERATOR_USERS="50",
            PULSE_GENERATOR_INVALID_RATE="0.5")
        started.append(demo)
        server, server_grpc, serving_url = start_serve(tmp / "state")
        started.append(server)
        config = loopback_config(tmp, {"pulse-processor": host_port(processor_url),
                                       "pulse-server": host_port(serving_url)})
        promtool("check", "config", str(config))
        prometheus = Prometheus(config, tmp / "tsdb")
        started.append(prometheus)
        yield {"prometheus": prometheus, "server_grpc": server_grpc, "processor_url": processor_url,
               "serving_url": serving_url}
    finally:
        for thing in reversed(started):
            thing.stop()


def test_both_jobs_are_scraped_and_export_build_info(stack):
    prom = stack["prometheus"]
    for job in JOBS:
        wait_for(lambda: prom.value(f'up{{job="{job}"}}') == 1, 30, f"up{{job={job!r}}} == 1")
        info = wait_for(lambda: prom.query(f'pulse_build_info{{job="{job}"}}'), 30, f"pulse_build_info of {job}")
        labels = info[0]["metric"]
        assert {k: labels[k] for k in ("version", "python", "bytewax")} == build_labels()


def test_processor_series_exist_and_move(stack):
    prom = stack["prometheus"]
    applied = 'sum(pulse_events_out_total{job="pulse-processor",outcome="applied"})'
    first = wait_for(lambda: prom.value(applied), 30, "pulse_events_out_total in Prometheus")
    wait_for(lambda: (prom.value(applied) or 0) > first, 30, "pulse_events_out_total to increase")
    wait_for(lambda: (prom.value('sum(rate(pulse_events_in_total{job="pulse-processor"}[5s]))') or 0) > 0,
             30, "a positive input rate")
    wait_for(lambda: (prom.value('sum(pulse_events_invalid_total{job="pulse-processor"})') or 0) > 0,
             30, "dead-lettered records")
    latency = 'sum(pulse_processing_latency_seconds_count{job="pulse-processor"})'
    count = wait_for(lambda: prom.value(latency), 30, "the processing latency histogram")
    wait_for(lambda: (prom.value(latency) or 0) > count, 30, "processing latency observations to increase")


def test_serving_series_exist_for_getprofile(stack):
    prom = stack["prometheus"]
    stub = pulse_pb2_grpc.PulseStub(grpc.insecure_channel(stack["server_grpc"]))
    calls = 0

    def get_profiles(n: int) -> None:
        nonlocal calls
        for i in range(n):
            try:
                stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=f"u{i:06d}"), timeout=5)
            except grpc.RpcError as err:  # unknown or not-yet-written profiles are answered too
                assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), err
            calls += 1

    requests = 'sum(pulse_rpc_requests_total{job="pulse-server",method="GetProfile"})'
    get_profiles(10)
    wait_for(lambda: (prom.value(requests) or 0) >= calls, 30, f"{calls} GetProfile calls counted in Prometheus")
    # A rate needs the counter to move between two scrapes after it appeared.
    get_profiles(10)
    wait_for(lambda: (prom.value(requests) or 0) >= calls, 30, f"{calls} GetProfile calls counted in Prometheus")
    p99 = ('histogram_quantile(0.99, sum by (le) '
           '(rate(pulse_rpc_latency_seconds_bucket{job="pulse-server",method="GetProfile"}[1m])))')
    value = wait_for(lambda: (v := prom.value(p99)) is not None and not math.isnan(v) and v, 30,
                     "GetProfile p99 from the latency histogram")
    assert 0 < value < 1, value
    by_code = prom.query('sum by (code) (pulse_rpc_requests_total{job="pulse-server",method="GetProfile"})')
    assert {r["metric"]["code"] for r in by_code} <= {"OK", "NOT_FOUND", "UNAVAILABLE"}
    wait_for(lambda: prom.value('pulse_serving_store_ready{job="pulse-server"}') == 1, 30,
             "the server's store to be ready")


def test_alert_rules_are_loaded_and_evaluate_on_real_series(stack):
    prom = stack["prometheus"]

    def rules() -> dict[str, dict]:
        groups = prom.api("rules")["groups"]
        return {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}

    loaded = wait_for(rules, 30, "the alert rules to be loaded")
    assert set(loaded) == alert_names()

    def all_evaluated() -> bool:
        current = rules()
        errors = {n: r.get("lastError") for n, r in current.items() if r["health"] == "err"}
        assert not errors, f"rules failing to evaluate: {errors}"
        return all(r["health"] == "ok" for r in current.values())

    wait_for(all_evaluated, 30, "every rule to be evaluated")

    def active() -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in prom.api("alerts")["alerts"]}

    # Half the demo's records are malformed: the dead-letter alert goes pending (it fires
    # after 10 minutes). Healthy processes raise nothing else that is about them.
    wait_for(lambda: "PulseDeadLetterRateHigh" in active(), 30, "PulseDeadLetterRateHigh to be pending")
    quiet = {"PulseProcessorDown", "PulseServerDown", "PulseNoEvents", "PulseServingStoreNotReady",
             "PulseServingInternalErrors"}
    wait_for(lambda: not (quiet & set(active())), 30, f"none of {sorted(quiet)} to be active")


def test_every_dashboard_query_is_accepted_and_the_core_panels_have_data(stack):
    prom = stack["prometheus"]
    dashboard = json.loads(DASHBOARD.read_text())
    # Wait for data behind the rate() windows the panels use.
    wait_for(lambda: prom.query('sum(rate(pulse_events_out_total[15s])) > 0'), 30, "rates over 15 s")
    with_data = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "15s")
            result = prom.query(expr)  # raises with Prometheus's reason if the query is bad
            if any(not math.isnan(float(r["value"][1])) for r in result):
                with_data.add(panel["title"])
    core = {"Events in", "Ingest → store p99", "Dead-lettered", "Targets up", "Throughput", "Processing latency",
            "Dead letters by reason", "Store writes", "Profiles", "RPC rate", "Store ready", "Build"}
    assert core <= with_data, f"core panels without data: {sorted(core - with_data)}"


def test_store_and_data_quality_series_are_fed(stack):
    prom = stack["prometheus"]
    job = '{job="pulse-processor"}'
    # By now the stack has run for several seconds: the series are there or not wired.
    wait_for(lambda: (prom.value(f"pulse_store_size_bytes{job}") or 0) > 0, 5, "pulse_store_size_bytes > 0")
    wait_for(lambda: (prom.value(f"pulse_profiles_in_store{job}") or 0) >= 0, 5, "pulse_profiles_in_store")
    # RocksDB's write path: memtables always have a size; level-0 files and stalls are counted
    family = '{job="pulse-processor",family="profiles"}'
    wait_for(lambda: (prom.value(f"pulse_store_memtable_bytes{family}") or 0) > 0, 5, "pulse_store_memtable_bytes")
    assert prom.value(f"pulse_store_level0_files{family}") is not None, "pulse_store_level0_files"
    assert prom.value(f"pulse_store_stall_seconds_total{job}") is not None, "pulse_store_stall_seconds_total"
    issues = f'sum(pulse_field_issues_total{{job="pulse-processor",issue=~"missing|invalid"}})'
    first = wait_for(lambda: prom.value(issues), 5, "pulse_field_issues_total")
    wait_for(lambda: (prom.value(issues) or 0) > first, 10, "pulse_field_issues_total to increase")
    assert prom.query(f"pulse_volume_ratio{job}"), "pulse_volume_ratio"
