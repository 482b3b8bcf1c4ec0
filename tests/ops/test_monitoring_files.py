"""The Grafana dashboard, its provisioning, the alert rules and their compose wiring, checked
without a Docker engine: every series they use is one Pulse declares, the dashboard is
well-formed, and the files compose mounts are where the configurations expect them.
(tests/ops/test_prometheus.py runs the rules and the dashboard's queries on a real Prometheus.)"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import pytest
import yaml
from prometheus_client import REGISTRY

import flows.metrics  # noqa: F401  (registers the processor's metrics)
import serving.metrics  # noqa: F401  (registers the server's metrics)
from tests.ops.processes import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "pulse.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_YML = DEPLOY / "prometheus.yml"
COMPOSE = REPO / "docker-compose.yml"
PULSE_SERIES = re.compile(r"\b(pulse_[a-z0-9_]+)\b")


def declared_series() -> set[str]:
    """Every sample name Pulse's metrics can export (counters' _total, histograms' _bucket, ...)."""
    names = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created"), "info": ("_info",), "gauge": ("",)}
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


@pytest.mark.parametrize("where,expr", dashboard_exprs() + alert_exprs())
def test_queries_use_only_series_pulse_declares(where, expr):
    unknown = set(PULSE_SERIES.findall(expr)) - declared_series()
    assert not unknown, f"{where}: {sorted(unknown)} are not declared in flows/metrics.py or serving/metrics.py"


def test_no_metric_carries_a_user_id_label():
    for family in REGISTRY.collect():
        if family.name.startswith("pulse_"):
            for sample in family.samples:
                assert not {"user_id", "profile_id", "anonymous_id", "event_id"} & set(sample.labels), family.name


def test_dashboard_is_well_formed():
    d = dashboard()
    assert d["uid"] == "pulse-overview" and d["title"] == "Pulse"
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in d["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"{panel['title']!r} needs a description for the on-call reader"
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]


def test_dashboard_covers_what_ops_watch():
    exprs = " ".join(expr for _title, expr in dashboard_exprs())
    for series in ("pulse_events_in_total", "pulse_events_out_total", "pulse_consumer_lag",
                   "pulse_processing_latency_seconds_bucket", "pulse_events_invalid_total",
                   "pulse_profiles_in_store", "pulse_store_size_bytes", "pulse_rpc_latency_seconds_bucket",
                   "pulse_rpc_requests_total", "pulse_source_errors_total", "pulse_field_issues_total",
                   "pulse_volume_ratio", "pulse_build_info", "pulse_store_stall_seconds_total",
                   "pulse_store_level0_files"):
        assert series in exprs, series
    rpc_latency = [e for _t, e in dashboard_exprs() if "pulse_rpc_latency_seconds_bucket" in e]
    assert {"0.5", "0.99"} <= {re.search(r"histogram_quantile\(([\d.]+)", e).group(1) for e in rpc_latency}
    assert all("by (le, method, code)" in e for e in rpc_latency if "histogram_quantile" in e and "method=" not in e)


def _compose_mounts(service: str) -> dict[str, str]:
    """container path -> repository path of a service's bind mounts."""
    out = {}
    for volume in yaml.safe_load(COMPOSE.read_text())["services"][service]["volumes"]:
        source, target, *_mode = volume.split(":")
        if source.startswith("./"):
            out[target] = source[2:]
    return out


def _resolve(mounts: dict[str, str], container_path: str):
    path = PurePosixPath(container_path)
    for target, source in mounts.items():
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return REPO / source / path.relative_to(target)
    return None


def test_compose_prometheus_finds_its_config_and_rules():
    mounts = _compose_mounts("prometheus")
    config = _resolve(mounts, "/etc/prometheus/prometheus.yml")
    assert config is not None and config.samefile(PROMETHEUS_YML)
    for rule_file in yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]:
        found = _resolve(mounts, str(PurePosixPath("/etc/prometheus") / rule_file))
        assert found is not None and found.is_file(), f"compose does not mount {rule_file}"
        # The same relative path works from the repository (promtool check config deploy/prometheus.yml).
        assert (PROMETHEUS_YML.parent / rule_file).samefile(found)


def test_compose_grafana_is_provisioned_with_the_datasource_and_the_dashboard():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "prometheus" in grafana["depends_on"]
    mounts = _compose_mounts("grafana")
    datasources = _resolve(mounts, "/etc/grafana/provisioning/datasources/prometheus.yml")
    assert datasources is not None and datasources.is_file()
    ds = yaml.safe_load(datasources.read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and ds["uid"] == "prometheus"
    providers = _resolve(mounts, "/etc/grafana/provisioning/dashboards/pulse.yml")
    assert providers is not None and providers.is_file()
    dashboards_dir = yaml.safe_load(providers.read_text())["providers"][0]["options"]["path"]
    found = _resolve(mounts, f"{dashboards_dir}/pulse.json")
    assert found is not None and found.samefile(DASHBOARD)
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _resolve(mounts, home).samefile(DASHBOARD)
    # Published on loopback only.
    assert all(p.startswith("127.0.0.1:") for p in grafana["ports"])
