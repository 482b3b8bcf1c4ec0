"""The gRPC API from a client that is not Python: Node.js with @grpc/grpc-js, loading the
repository's proto/pulse/v1/pulse.proto at run time (tests/node/client.js).

A real server (``create_server`` on 127.0.0.1 port 0, API keys required) reads a real
RocksDB store that the profile flow filled from synthetic events. The Node client gets a
recommendation (the same items as the Python stub), a profile, a decision from the shipped
catalog deploy/content.yaml (the same module as the Python stub), the authentication and
authorization refusals, and INVALID_ARGUMENT with its message.

tests/node/node_modules is installed here by ``npm ci`` when it is missing or older than
package-lock.json (npm cache in .cache/npm, so a rerun needs no network). Node.js and npm
are required: without them this module fails rather than skips.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord
from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from serving import create_server
from state.store import RocksReader, RocksStore
from tests.serving.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
CLIENT = NODE_DIR / "client.js"
NPM_CACHE = REPO / ".cache" / "npm"
CONTENT_FILE = REPO / "deploy" / "content.yaml"

READ_KEY = "node-read-key-0123456789"
ADMIN_KEY = "node-admin-key-0123456789"

TENTS, PANS = "outdoor/tents", "kitchen/pans"
PRICES = {"tent": 149.0, "pan": 39.0}
# Crowd behaviour per item: (views, purchases); ann likes tents, bought tent-1 and holds
# tent-2 in her cart, so her personal answer differs from the anonymous one.
CROWD = {"pan-1": (12, 1), "pan-2": (9, 0), "pan-3": (6, 0),
         "tent-1": (8, 1), "tent-2": (7, 0), "tent-3": (10, 0), "tent-4": (5, 0)}


# --- Node.js -------------------------------------------------------------------------------

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: tests/integration/test_node_client.py calls the server from "
                    f"Node.js (@grpc/grpc-js); install Node.js 18+ with npm", pytrace=False)
    return path


def _installed() -> bool:
    marker = NODE_DIR / "node_modules" / ".package-lock.json"  # written by npm at the end of an install
    return marker.exists() and marker.stat().st_mtime >= (NODE_DIR / "package-lock.json").stat().st_mtime


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/node/node_modules installed (``npm ci``) if needed."""
    node_bin = _tool("node")
    npm_bin = _tool("npm")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with open(NPM_CACHE.parent / "npm-install.lock", "w") as lock:  # one install at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            env = {**os.environ, "npm_config_cache": str(NPM_CACHE), "npm_config_update_notifier": "false"}
            done = subprocess.run([npm_bin, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=NODE_DIR,
                                  env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.fail(f"npm ci in {NODE_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
                            pytrace=False)
    return node_bin


def node_calls(node: str, address: str, *calls: tuple[str, dict], api_key: str | None = None) -> list[dict]:
    """Run tests/node/client.js with ``calls`` ((method, request) pairs); one result dict per call."""
    args = [node, str(CLIENT), address, "--timeout", "10"]
    if api_key is not None:
        args += ["--api-key", api_key]
    for method, request in calls:
        args += [method, json.dumps(request)]
    env = {k: v for k, v in os.environ.items() if k not in ("PULSE_API_KEY", "PULSE_GRPC_ADDRESS")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, f"client.js exited with {done.returncode}:\n{done.stderr}"
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["method"] for r in results] == [m if "." in m else f"Pulse.{m}" for m, _ in calls], done.stdout
    return results


def ok(result: dict) -> dict:
    assert result["ok"], f"{result['method']} failed: {result}"
    return result["response"]


# --- the store and the server --------------------------------------------------------------

def item_fields(item_id: str, **more) -> dict:
    return {"item_id": item_id, "category": TENTS if item_id.startswith("tent") else PANS,
            "price": PRICES[item_id.split("-")[0]], **more}


def behaviour(t0: int) -> list[RawRecord]:
    records: list[RawRecord] = []

    def add(type_: str, user: str, **fields) -> None:
        ts = t0 + 10 * len(records)
        value = orjson.dumps({"event_id": f"e{len(records)}", "type": type_, "user_id": user, "timestamp": ts,
                              "context": {"channel": "web"}, **fields})
        records.append(RawRecord(value, user.encode(), "events/0", len(records), ts))

    for item_id, (views, purchases) in CROWD.items():
        for n in range(views):
            add("product_view", f"crowd-{n:02d}", **item_fields(item_id))
        for n in range(purchases):
            add("purchase", f"buyer-{n:02d}", items=[item_fields(item_id, quantity=1)])
    for n in range(1, 5):
        add("product_view", "ann", **item_fields(f"tent-{n}"))
    add("add_to_cart", "ann", **item_fields("tent-2", quantity=1))
    add("purchase", "ann", items=[item_fields("tent-1", quantity=1)])
    return records


@dataclass
class Server:
    address: str
    stub: pulse_pb2_grpc.PulseStub  # the Python client, for comparison
    metadata: tuple[tuple[str, str], ...] = (("x-api-key", READ_KEY),)


@pytest.fixture(scope="module", params=["aio", "sync"])
def server(tmp_path_factory, request) -> Iterator[Server]:
    """Both server kinds (``serving.server``), each with keys, content and the flow's state."""
    tmp = tmp_path_factory.mktemp("node-client")
    writer = RocksStore(tmp / "store")
    dead: list = []
    run_main(build_flow(TestingSource(behaviour(int(time.time() * 1000) - 60_000), batch_size=50),
                        TestingSink(dead), writer))
    assert dead == [], f"the synthetic events were refused: {dead}"
    keys = tmp / "keys.txt"
    keys.write_text(f"{READ_KEY} read\n{ADMIN_KEY} admin\n", encoding="utf-8")
    reader = RocksReader(tmp / "store", tmp / "secondary")
    srv, port = create_server("127.0.0.1:0", reader, api_keys_file=str(keys), content_file=str(CONTENT_FILE),
                              catch_up_interval_ms=5, items_refresh_ms=10, kind=request.param)
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    running = Server(f"127.0.0.1:{port}", pulse_pb2_grpc.PulseStub(channel))
    try:
        # Serve only once the item index holds the flow's items.
        wait_until(lambda: len(running.stub.GetRecommendations(pulse_pb2.GetRecommendationsRequest(k=20),
                                                               metadata=running.metadata, timeout=5).items)
                   == len(CROWD) - 1,  # at most 3 per category: tent-4 is left out
                   what="the item index to hold every item")
        yield running
    finally:
        channel.close()
        srv.stop(grace=None).wait()
        reader.close()
        writer.close()


# --- the tests -----------------------------------------------------------------------------

def test_recommendations_from_node_equal_the_python_answer(node, server):
    requests = [{"user_id": "ann", "k": 5}, {"user_id": "", "k": 5},
                {"user_id": "ann", "k": 5, "context": {"category": PANS, "channel": "web"},
                 "exclude_item_ids": ["pan-1"], "filters": {"min_price": 10.0, "max_price": 200.0}}]
    results = node_calls(node, server.address, *[("GetRecommendations", r) for r in requests], api_key=READ_KEY)
    for request, result in zip(requests, results):
        answer = ok(result)
        python = server.stub.GetRecommendations(pulse_pb2.GetRecommendationsRequest(**request),
                                                metadata=server.metadata, timeout=5)
        assert answer["items"], request
        assert [i["item_id"] for i in answer["items"]] == [i.item_id for i in python.items], request
        assert (answer["strategy"], answer["personalized"]) == (python.strategy, python.personalized), request
        for node_item, py_item in zip(answer["items"], python.items):
            assert (node_item["category"], node_item["price"], node_item["reason"]) == (
                py_item.category, py_item.price, py_item.reason)
            assert node_item["score"] == pytest.approx(py_item.score, rel=1e-3)  # decays between the two calls

    personal, anonymous, filtered = (ok(r) for r in results)
    assert (personal["strategy"], personal["personalized"]) == ("hybrid", True)
    assert [i["item_id"] for i in personal["items"]] != [i["item_id"] for i in anonymous["items"]]
    assert not {"tent-1", "tent-2"} & {i["item_id"] for i in personal["items"]}  # bought / in the cart
    assert (anonymous["strategy"], anonymous["personalized"]) == ("popular", False)
    assert [i["item_id"] for i in anonymous["items"]][:2] == ["tent-1", "pan-1"]
    assert "pan-1" not in {i["item_id"] for i in filtered["items"]}


def test_profile_from_node(node, server):
    [result] = node_calls(node, server.address, ("GetProfile", {"user_id": "ann"}), api_key=READ_KEY)
    profile = ok(result)["profile"]
    assert profile["profile_id"] == "user:ann"
    assert profile["event_counts"] == {"product_view": "4", "add_to_cart": "1", "purchase": "1"}  # int64: strings
    assert [line["item_id"] for line in profile["cart"]] == ["tent-2"]
    assert profile["consent"]["default_regime"] == "CONSENT_REGIME_OPT_OUT"  # enums by name
    assert profile["personalization_allowed"] is True


def test_decide_from_node(node, server):
    request = {"user_id": "ann", "slots": ["hero"], "context": {"channel": "web", "page_type": "home"}}
    [result] = node_calls(node, server.address, ("Decide", request), api_key=READ_KEY)
    answer = ok(result)
    [decision] = answer["decisions"]
    assert decision["slot"] == "hero"
    assert decision["module_id"]
    payload = json.loads(decision["payload_json"])
    assert isinstance(payload, dict) and payload
    assert decision["reason"]
    python = server.stub.Decide(pulse_pb2.DecideRequest(**request), metadata=server.metadata, timeout=5)
    assert [(d.slot, d.module_id, json.loads(d.payload_json)) for d in python.decisions] == [
        ("hero", decision["module_id"], payload)]
    assert answer["personalized"] == python.personalized


def test_authentication_failures(node, server):
    call = ("GetRecommendations", {"user_id": "ann", "k": 3})
    [missing] = node_calls(node, server.address, call)
    [wrong] = node_calls(node, server.address, call, api_key="not-a-key")
    assert (missing["ok"], missing["code"], missing["name"]) == (False, 16, "UNAUTHENTICATED")
    assert missing["details"] == "this RPC needs an x-api-key"
    assert (wrong["ok"], wrong["code"], wrong["name"]) == (False, 16, "UNAUTHENTICATED")
    assert wrong["details"] == "the x-api-key is not a known key"
    assert "not-a-key" not in wrong["details"]

    export = ("Admin.ExportUser", {"user_id": "ann"})
    [no_key, read_key] = [*node_calls(node, server.address, export),
                          *node_calls(node, server.address, export, api_key=READ_KEY)]
    assert (no_key["code"], no_key["name"]) == (16, "UNAUTHENTICATED")
    assert no_key["details"] == "admin RPCs need an x-api-key"
    assert (read_key["code"], read_key["name"]) == (7, "PERMISSION_DENIED")
    assert read_key["details"] == "admin RPCs need a key with role admin; this key has role read"

    [admin] = node_calls(node, server.address, export, api_key=ADMIN_KEY)
    document = json.loads(ok(admin)["document_json"])
    assert ok(admin)["profile_id"] == document["profile_id"] == "user:ann"


def test_invalid_arguments_carry_their_message(node, server):
    results = node_calls(node, server.address,
                         ("GetProfile", {"user_id": ""}),
                         ("GetRecommendations", {"k": -1}),
                         ("GetRecommendations", {"filters": {"min_price": 10.0, "max_price": 5.0}}),
                         ("GetProfile", {"user_id": "nobody"}),
                         api_key=READ_KEY)
    assert [(r["ok"], r["code"], r["name"], r["details"]) for r in results] == [
        (False, 3, "INVALID_ARGUMENT", "user_id is required"),
        (False, 3, "INVALID_ARGUMENT", "k = -1 is out of range: ask for 1..100 items (0 means 10)"),
        (False, 3, "INVALID_ARGUMENT", "filters.min_price (10) is greater than filters.max_price (5)"),
        (False, 5, "NOT_FOUND", results[3]["details"]),
    ]
    assert "nobody" in results[3]["details"]
