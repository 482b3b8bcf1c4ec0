"""``pulse status``: a one-screen summary for someone on call, read from the processor's
and the server's ``/metrics`` pages (no Prometheus needed).

Each page is fetched twice, ``sample_seconds`` apart, so throughput, RPC rates and
latency quantiles describe the last moment rather than the process's whole life. An
endpoint that does not answer is reported as UNREACHABLE; the rest is still shown.

    render_status("http://127.0.0.1:9464/metrics", "http://127.0.0.1:9465/metrics")
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pulse.config import PulseConfig

Labels = dict[str, str]


@dataclass
class Snapshot:
    """One scrape: sample name -> [(labels, value)], or why there is none."""

    url: str
    at: float
    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def has(self, name: str) -> bool:
        return name in self.samples

    def series(self, name: str, **match: str) -> list[tuple[Labels, float]]:
        return [(labels, value) for labels, value in self.samples.get(name, ())
                if all(labels.get(k) == v for k, v in match.items())]

    def total(self, name: str, **match: str) -> float | None:
        """Sum of the matching samples; None if the metric is not exported at all."""
        if name not in self.samples:
            return None
        return sum(value for _labels, value in self.series(name, **match))


def scrape(url: str, timeout: float = 2.0) -> Snapshot:
    """Fetch and parse one ``/metrics`` page; failures become ``Snapshot.error``."""
    at = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return Snapshot(url, at, error=f"HTTP {exc.code} {exc.reason}")
    except urllib.error.URLError as exc:
        reason = exc.reason
        return Snapshot(url, at, error=getattr(reason, "strerror", None) or str(reason))
    except (OSError, ValueError) as exc:
        return Snapshot(url, at, error=f"{type(exc).__name__}: {exc}")
    snap = Snapshot(url, at)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                snap.samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except ValueError as exc:
        return Snapshot(url, at, error=f"not a Prometheus metrics page: {exc}")
    return snap


# --- arithmetic ------------------------------------------------------------------------

def _rate(first: Snapshot | None, second: Snapshot, name: str, **match: str) -> float | None:
    """Per-second increase of a counter between two snapshots (None without two)."""
    if first is None or not first.ok:
        return None
    a, b = first.total(name, **match), second.total(name, **match)
    elapsed = second.at - first.at
    if a is None or b is None or elapsed <= 0:
        return None
    return max(0.0, b - a) / elapsed


def _buckets(snap: Snapshot, name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram, summed over matching series."""
    acc: dict[float, float] = {}
    for labels, value in snap.series(name + "_bucket", **match):
        le = float(labels["le"])
        acc[le] = acc.get(le, 0.0) + value
    return sorted(acc.items())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile from cumulative buckets (linear within a bucket).

    >>> histogram_quantile(0.5, [(1.0, 10), (2.0, 30), (float("inf"), 30)])
    1.25
    >>> histogram_quantile(0.99, [(0.1, 0), (float("inf"), 5)]) # beyond the last bound: that bound
    0.1
    >>> histogram_quantile(0.5, [(0.1, 0), (float("inf"), 0)]) is None
    True
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _recent_quantiles(first: Snapshot | None, second: Snapshot, name: str, qs: Iterable[float],
                      **match: str) -> tuple[list[float | None], str]:
    """Quantiles over the sampling interval when it saw observations, else since start."""
    now = _buckets(second, name, **match)
    if first is not None and first.ok:
        before = dict(_buckets(first, name, **match))
        delta = [(le, count - before.get(le, 0.0)) for le, count in now]
        if delta and delta[-1][1] > 0:
            return [histogram_quantile(q, delta) for q in qs], "recent"
    return [histogram_quantile(q, now) for q in qs], "since start"


# --- formatting ------------------------------------------------------------------------

def _n(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.0f}"


def _per_s(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}/s" if value < 100 else f"{value:,.0f}/s"


def _secs(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _bytes(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _build(snap: Snapshot) -> str:
    info = snap.series("pulse_build_info")
    if not info:
        return "n/a"
    labels = info[0][0]
    return (f"pulse {labels.get('version', '?')} · python {labels.get('python', '?')} · "
            f"bytewax {labels.get('bytewax', '?')}")


def _top(pairs: list[tuple[str, float]], limit: int) -> str:
    shown = [f"{name} {_n(v)}" for name, v in sorted(pairs, key=lambda p: -p[1]) if v > 0][:limit]
    return ", ".join(shown) if shown else "none"


def _unreachable(role: str, snap: Snapshot, hint: str) -> list[str]:
    return [f"{role:<10} {snap.url}  UNREACHABLE: {snap.error}", f"  {hint}"]


# --- sections --------------------------------------------------------------------------

_OUTCOME_ORDER = ("applied", "duplicate", "replayed", "suppressed", "too_late", "invalid")


def _processor_lines(first: Snapshot | None, snap: Snapshot) -> list[str]:
    role = "Processor"
    if not snap.ok:
        return _unreachable(role, snap, "is `pulse run` (or `pulse demo`) running? "
                                        "Its address is processor.metrics_host / metrics_port.")
    if not snap.has("pulse_events_out_total"):
        return [f"{role:<10} {snap.url}  reachable, but it exports no Pulse processor metrics "
                "(is this the server's endpoint?)"]
    events_in = snap.total("pulse_events_in_total")
    outcomes = {labels.get("outcome", "?"): v for labels, v in snap.series("pulse_events_out_total")}
    order = sorted(outcomes, key=lambda o: (_OUTCOME_ORDER.index(o) if o in _OUTCOME_ORDER else 99, o))
    shown = " · ".join(f"{o} {_n(outcomes[o])}" for o in order)
    invalid = outcomes.get("invalid")
    share = f" ({100 * invalid / events_in:.1f} % invalid)" if events_in and invalid is not None else ""
    lines = [f"{role:<10} {snap.url}",
             f"  build        {_build(snap)}",
             f"  events       in {_n(events_in)} · {shown}{share}"]
    rate_in = _rate(first, snap, "pulse_events_in_total")
    rate_applied = _rate(first, snap, "pulse_events_out_total", outcome="applied")
    lines.append(f"  throughput   in {_per_s(rate_in)} · applied {_per_s(rate_applied)}"
                 if rate_in is not None else "  throughput   n/a (sampled once)")
    lag = snap.series("pulse_consumer_lag")
    lines.append(f"  consumer lag {_n(sum(v for _l, v in lag))} records over {len(lag)} partitions"
                 if lag else "  consumer lag n/a (no Kafka partitions assigned)")
    parts, windows = [], []
    for clock in ("ingest", "event"):
        (p50, p99), window = _recent_quantiles(first, snap, "pulse_processing_latency_seconds", (0.5, 0.99),
                                               clock=clock)
        parts.append(f"{clock} p50 {_secs(p50)} p99 {_secs(p99)}")
        windows.append(window)
    if len(set(windows)) == 1:
        lines.append(f"  latency      {' · '.join(parts)} ({windows[0]})")
    else:
        lines.append("  latency      " + " · ".join(f"{p} ({w})" for p, w in zip(parts, windows)))
    reasons = [(labels.get("reason", "?"), v) for labels, v in snap.series("pulse_events_invalid_total")]
    lines.append(f"  dead letters {_n(snap.total('pulse_dlq_published_total'))} published · by reason: "
                 f"{_top(reasons, 4)}")
    lines.append(f"  profiles     {_n(snap.total('pulse_profiles_in_memory'))} in memory · "
                 f"~{_n(snap.total('pulse_profiles_in_store'))} in store · "
                 f"store {_bytes(snap.total('pulse_store_size_bytes'))} on disk")
    ratio = snap.total("pulse_volume_ratio")
    if ratio is not None:
        last = snap.total("pulse_volume_events_per_minute")
        if last is None or math.isnan(last):
            lines.append("  volume       warming up (needs a few complete minutes of input)")
        else:
            ratio_text = "no level yet" if math.isnan(ratio) else f"ratio {ratio:.2f}"
            lines.append(f"  volume       {_n(last)}/min last minute · recent level "
                         f"{_n(snap.total('pulse_volume_level_per_minute'))}/min ({ratio_text})")
    issues = [(f"{labels.get('field', '?')} {labels.get('issue', '?')}", v)
              for labels, v in snap.series("pulse_field_issues_total")]
    if snap.has("pulse_field_issues_total"):
        lines.append(f"  field issues {_top(issues, 3)}")
    if snap.has("pulse_identity_merges_total"):
        lines.append(f"  identity     {_n(snap.total('pulse_identity_merges_total'))} merges · "
                     f"{_n(snap.total('pulse_identity_conflicts_total'))} conflicts refused")
    members = [(labels.get("segment", "?"), v) for labels, v in snap.series("pulse_segment_members")]
    if members:
        moves = _rate(first, snap, "pulse_segment_transitions_total")
        lag = snap.total("pulse_watermark_lag_seconds")
        lines.append(f"  segments     {len(members)} · largest: {_top(members, 3)} · "
                     f"transitions {_per_s(moves) if moves is not None else 'n/a'}")
        lines.append(f"  triggers     {_n(snap.total('pulse_triggers_published_total'))} published · outbox "
                     f"{_n(snap.total('pulse_outbox_depth'))} waiting · segment clock "
                     f"{_secs(lag) if lag is not None else 'n/a'} behind")
    aucs = {labels.get("model", "?"): v for labels, v in snap.series("pulse_model_roc_auc")}
    if aucs:
        losses = {labels.get("model", "?"): v for labels, v in snap.series("pulse_model_log_loss")}
        drifts = {labels.get("model", "?"): v for labels, v in snap.series("pulse_model_drifts_total")}
        lines.append("  models       " + " · ".join(
            f"{name} AUC {aucs[name]:.3f} log loss {losses.get(name, math.nan):.3f} drifts {_n(drifts.get(name, 0))}"
            for name in sorted(aucs)))
    errors = snap.total("pulse_source_errors_total")
    if errors:
        lines.append(f"  source errors {_n(errors)} (see the processor's log)")
    return lines


def render_models(doc: dict, now_ms: int | None = None) -> str:
    """``pulse models status``: one line per model from the stored status (``flows.learning``).

    >>> print(render_models({"saved_ms": 1000, "models": {"propensity": {"kind": "purchase",
    ...     "horizon_ms": 1800000, "examples": 1200, "positives": 300, "roc_auc": 0.8123,
    ...     "log_loss": 0.4567, "drifts": 1, "last_drift_ms": 500, "policy": "reset"}}}, now_ms=61000))
    saved 60 s ago
    model        horizon   examples  positives  ROC AUC  log loss  drifts  last drift (event time)
    propensity   30m           1200        300    0.812     0.457       1  1970-01-01T00:00:00Z
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    lines = [f"saved {max(0, now - doc.get('saved_ms', now)) / 1000:.0f} s ago",
             f"{'model':<12} {'horizon':<8} {'examples':>9} {'positives':>10} {'ROC AUC':>8} {'log loss':>9} "
             f"{'drifts':>7}  last drift (event time)"]
    for name, st in sorted(doc.get("models", {}).items()):
        horizon = st.get("horizon_ms", 0)
        text = f"{horizon // 86_400_000}d" if horizon % 86_400_000 == 0 else f"{horizon // 60_000}m"
        auc = "n/a" if st.get("roc_auc") is None else f"{st['roc_auc']:.3f}"
        loss = "n/a" if st.get("log_loss") is None else f"{st['log_loss']:.3f}"
        last = st.get("last_drift_ms")
        when = "-" if not last else datetime.fromtimestamp(last / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{name:<12} {text:<8} {st.get('examples', 0):>9} {st.get('positives', 0):>10} {auc:>8} "
                     f"{loss:>9} {st.get('drifts', 0):>7}  {when}")
    return "\n".join(lines)


def _serving_lines(first: Snapshot | None, snap: Snapshot) -> list[str]:
    role = "Serving"
    if not snap.ok:
        return _unreachable(role, snap, "is `pulse serve` running? Its address is serving.metrics_host / "
                                        "metrics_port (`pulse demo` serves both on the processor's).")
    if not snap.has("pulse_rpc_requests_total") and not snap.has("pulse_serving_store_ready"):
        return [f"{role:<10} {snap.url}  reachable, but it exports no Pulse serving metrics "
                "(is this the processor's endpoint?)"]
    ready = snap.total("pulse_serving_store_ready")
    state = "n/a" if ready is None else ("ready" if ready >= 1 else "NOT READY (waiting for the processor's store)")
    (catch_up_p99,), window = _recent_quantiles(first, snap, "pulse_store_catch_up_seconds", (0.99,))
    lines = [f"{role:<10} {snap.url}",
             f"  build        {_build(snap)}",
             f"  store        {state} · catch-up p99 {_secs(catch_up_p99)} ({window})"]
    methods = sorted({labels.get("method", "?") for labels, _v in snap.series("pulse_rpc_requests_total")})
    if not methods:
        lines.append("  RPCs         none yet")
        return lines
    lines.append(f"  {'RPCs':<12} {'method':<14} {'total':>10} {'rate':>9} {'p50':>9} {'p99':>9}  not OK")
    for method in methods:
        total = snap.total("pulse_rpc_requests_total", method=method)
        rate = _rate(first, snap, "pulse_rpc_requests_total", method=method)
        (p50, p99), window = _recent_quantiles(first, snap, "pulse_rpc_latency_seconds", (0.5, 0.99),
                                               method=method)
        codes = [(labels.get("code", "?"), v) for labels, v in snap.series("pulse_rpc_requests_total", method=method)
                 if labels.get("code") != "OK"]
        lines.append(f"  {'':<12} {method:<14} {_n(total):>10} {_per_s(rate):>9} {_secs(p50):>9} "
                     f"{_secs(p99):>9}  {_top(codes, 3)}")
    lines.append(f"  {'':<12} (latency: handler time, {window})")
    return lines


def render_status(processor_metrics_url: str, serving_metrics_url: str, *, sample_seconds: float = 1.0,
                  timeout: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """The one-screen summary of both processes (never raises for an unreachable endpoint)."""
    return _render(processor_metrics_url, serving_metrics_url, sample_seconds, timeout, sleep)[0]


def _render(processor_url: str, serving_url: str, sample_seconds: float, timeout: float,
            sleep: Callable[[float], None]) -> tuple[str, bool]:
    """(summary, whether every endpoint answered)."""
    urls = list(dict.fromkeys((processor_url, serving_url)))  # `pulse demo` serves both on one URL
    first = {url: scrape(url, timeout) for url in urls}
    second = dict(first)
    if sample_seconds > 0 and any(s.ok for s in first.values()):
        sleep(sample_seconds)
        second = {url: (scrape(url, timeout) if first[url].ok else first[url]) for url in urls}
    before = {url: (first[url] if second[url] is not first[url] else None) for url in urls}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    rates = f"rates over {sample_seconds:g} s" if sample_seconds > 0 else "totals only"
    lines = [f"Pulse status at {stamp} ({rates})", ""]
    lines += _processor_lines(before[processor_url], second[processor_url])
    lines.append("")
    lines += _serving_lines(before[serving_url], second[serving_url])
    return "\n".join(lines) + "\n", all(s.ok for s in second.values())


# --- command line ----------------------------------------------------------------------

def _metrics_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"  # a wildcard listener answers on loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processor", metavar="URL", default=None,
                        help="processor /metrics URL (default: from processor.metrics_host/metrics_port)")
    parser.add_argument("--serving", metavar="URL", default=None,
                        help="server /metrics URL (default: from serving.metrics_host/metrics_port)")
    parser.add_argument("--sample", metavar="SECONDS", type=float, default=1.0,
                        help="seconds between the two scrapes that give rates (0: totals only)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=2.0, help="per-request timeout")


def cmd_status(cfg: PulseConfig, args: argparse.Namespace) -> int:
    """``pulse status``: print the summary; exit 1 if an endpoint did not answer."""
    processor = args.processor or _metrics_url(cfg.processor.metrics_host, cfg.processor.metrics_port)
    serving = args.serving or _metrics_url(cfg.serving.metrics_host, cfg.serving.metrics_port)
    text, reachable = _render(processor, serving, max(0.0, args.sample), args.timeout, time.sleep)
    print(text, end="", flush=True)
    return 0 if reachable else 1


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m pulse.status``); ``--config`` as for ``pulse``."""
    from pulse.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="pulse status", description="one-screen summary of a running Pulse")
    parser.add_argument("--config", help="TOML configuration file (default: $PULSE_CONFIG, else built-in defaults)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"pulse: configuration error: {exc}", file=sys.stderr)
        return 2
    return cmd_status(cfg, args)


if __name__ == "__main__":
    sys.exit(main())
