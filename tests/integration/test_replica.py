"""A serving replica from the changelog: `pulse run` with `processor.changelog` publishes
every state change to a compacted topic; `pulse serve --from-changelog`, started late on
its own state directory, materializes it into its own RocksDB, answers once it has caught
up, follows changes made after it started, and ends with exactly the writer's profiles
(profiles absorbed by identity stitching deleted by tombstones included)."""

from __future__ import annotations

import time

import grpc
import pytest

from operators.synthetic import ClickstreamGenerator
from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from state.store import RocksStore
from tests.integration.test_pipeline import Pulse, event, free_port, metric, produce, pulse_env, wait_for

pytestmark = pytest.mark.kafka


def version_or_none(stub, user: str) -> int | None:
    try:
        return stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=user), timeout=2).profile.version
    except grpc.RpcError as err:
        if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
            return None
        raise


def profiles(path) -> dict:
    store = RocksStore(path)
    try:
        return {p.profile_id: p.to_record() for p in store.iter_profiles()}
    finally:
        store.close()


def test_a_late_replica_catches_up_from_the_changelog_and_follows_it(kafka_bootstrap, kafka_topic, tmp_path):
    events, dlq = kafka_topic("events", partitions=2), kafka_topic("dlq")
    gen = ClickstreamGenerator(seed=51, users=400, invalid_rate=0.0)
    start_ms = int(time.time() * 1000) - 3_600_000
    backlog = [gen.next_record(start_ms + i * 300) for i in range(6_000)]
    produce(kafka_bootstrap, events, backlog)
    metrics_port, grpc_port = free_port(), free_port()
    env = pulse_env(kafka_bootstrap, events, dlq, tmp_path / "writer", PULSE_PROCESSOR_CHANGELOG="true",
                    PULSE_KAFKA_CHANGELOG_TOPIC=events + ".profiles", PULSE_PROCESSOR_METRICS_PORT=str(metrics_port))
    replica_env = {**env, "PULSE_STATE_DIR": str(tmp_path / "replica-host"),
                   "PULSE_SERVING_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}", "PULSE_STATE_WRITE_BUFFER_MB": "16"}
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    run = Pulse(["run"], env, tmp_path / "run.log")
    serve = None
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = pulse_pb2_grpc.PulseStub(channel)
    try:
        def backlog_applied():
            try:
                return metric(url, 'pulse_events_out_total{outcome="applied"}') >= len(backlog)
            except OSError:
                return False

        wait_for(backlog_applied, 120, f"the backlog applied by the writer\n{run.text()[-2000:]}")
        # The replica starts only now, with the whole backlog on the changelog to read.
        serve = Pulse(["serve", "--from-changelog"], replica_env, tmp_path / "serve.log")
        wait_for(lambda: version_or_none(stub, "u000001"), 90, f"the replica answering\n{serve.text()[-2000:]}")
        produce(kafka_bootstrap, events, [event("late-1", "late-user", "product_view", item_id="sku-late", price=5.0)])
        wait_for(lambda: version_or_none(stub, "late-user"), 60,
                 f"a change made after the replica started\n{serve.text()[-2000:]}\n{run.text()[-2000:]}")
        run.stop()  # drains the changelog publisher
        assert run.proc.returncode == 0, run.text()[-3000:]
        want = profiles(tmp_path / "writer" / "store")
        assert len(want) > 300

        def replica_has_every_version():
            return all(version_or_none(stub, pid) == rec["version"] for pid, rec in want.items())

        wait_for(replica_has_every_version, 60, f"every profile's last version on the replica\n{serve.text()[-2000:]}",
                 interval=0.5)
    finally:
        channel.close()
        if serve is not None:
            serve.stop()
        run.stop()
    # The replica wrote its own RocksDB with the configured memtable (state.write_buffer_mb);
    # read before the check below opens the store again (and writes its own OPTIONS file).
    options = max((tmp_path / "replica-host" / "replica").glob("OPTIONS-*")).read_text()
    assert "write_buffer_size=16777216" in options.split('[CFOptions "profiles"]')[1].split("[TableOptions")[0]
    got = profiles(tmp_path / "replica-host" / "replica")
    assert got == want
