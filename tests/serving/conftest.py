"""Fixtures: a real RocksDB writer in a tmp dir, and real gRPC servers on loopback port 0."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from operators.items import ItemStats
from operators.profile import Profile
from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from serving import PulseServer, create_server
from state.codec import encode_item, encode_profile
from state.store import RocksReader, RocksStore, encode_members

ADMIN_KEY = "test-admin-key-0123456789"


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def cart_log(cart: dict[str, dict]) -> dict[str, dict]:
    """A ``Profile.cart_log`` whose ``cart`` view is ``cart`` (item -> qty, price, category, added_ms)."""
    return {item_id: {"ops": [[line["added_ms"], line["qty"]]], "since": 0, "price": line["price"],
                      "price_ms": line["added_ms"], "category": line["category"]}
            for item_id, line in cart.items()}


def make_profile(profile_id: str, **fields) -> Profile:
    """A profile with every part set; ``cart=`` takes the view form (see ``cart_log``)."""
    base = dict(
        counts={"page_view": 7, "add_to_cart": 2, "purchase": 1},
        first_seen_ms=1_796_205_600_250,
        last_seen_ms=1_796_209_200_999,
        total_spend=219.5,
        orders=1,
        cart={
            "sku-2": {"qty": 1, "price": 15.0, "category": None, "added_ms": 1_796_209_100_000},
            "sku-1": {"qty": 2, "price": 120.0, "category": "tents", "added_ms": 1_796_209_000_000},
        },
        categories={"tents": 9, "boots": 4, "hats": 4, "socks": 3, "maps": 2, "stoves": 1},
        last_device="mobile",
        last_channel="app",
        last_geo={"country": "FR", "city": "Lyon", "lat": 45.76, "lon": 4.84},
        positions={"pulse.events/0": 41},
        version=10,
    )
    base.update(fields)
    base["cart_log"] = cart_log(base.pop("cart"))
    return Profile(profile_id, **base)


def put_profile(store, profile: Profile, *aliases: str) -> None:
    """Write ``profile`` with its identity records, as the flow does: the profile id and
    ``aliases`` all map to it, and its member list holds them all (sorted)."""
    pid = profile.profile_id
    members = sorted({pid, *aliases})
    store.apply(profiles={pid: encode_profile(profile)}, aliases={a: pid for a in members},
                members={pid: encode_members(members)})


def put_items(store, *items: ItemStats) -> None:
    """Write item statistics, as the flow does (one WriteBatch)."""
    store.apply(profiles={}, items={item.item_id: encode_item(item) for item in items})


@dataclass
class Running:
    server: PulseServer
    port: int
    channel: grpc.Channel
    stub: pulse_pb2_grpc.PulseStub
    admin: pulse_pb2_grpc.AdminStub

    def get(self, user_id: str, timeout: float = 5.0) -> pulse_pb2.GetProfileResponse:
        return self.stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=user_id), timeout=timeout)

    def recommend(self, user_id: str = "", timeout: float = 5.0, **fields) -> pulse_pb2.GetRecommendationsResponse:
        request = pulse_pb2.GetRecommendationsRequest(user_id=user_id, **fields)
        return self.stub.GetRecommendations(request, timeout=timeout)

    def erase(self, user_id: str, request_id: str = "", key: str | None = ADMIN_KEY,
              timeout: float = 30.0) -> pulse_pb2.EraseUserResponse:
        metadata = () if key is None else (("x-api-key", key),)
        return self.admin.EraseUser(pulse_pb2.EraseUserRequest(user_id=user_id, request_id=request_id),
                                    metadata=metadata, timeout=timeout)

    def export(self, user_id: str, key: str | None = ADMIN_KEY, timeout: float = 5.0) -> pulse_pb2.ExportUserResponse:
        metadata = () if key is None else (("x-api-key", key),)
        return self.admin.ExportUser(pulse_pb2.ExportUserRequest(user_id=user_id), metadata=metadata, timeout=timeout)


@pytest.fixture(params=["sync", "aio"])
def server_kind(request) -> str:
    """Every test that starts a server runs against both kinds (``create_server(kind=)``)."""
    return request.param


@pytest.fixture
def start_server(make_reader, server_kind) -> Iterator[Callable[..., Running]]:
    """``start_server(reader, **kwargs)`` -> a started server on 127.0.0.1:0 and a client.

    Depends on ``make_reader`` so servers stop before their readers close.
    """
    started: list[Running] = []

    def start(reader, **kwargs) -> Running:
        kwargs.setdefault("catch_up_interval_ms", 5)
        kwargs.setdefault("kind", server_kind)
        server, port = create_server("127.0.0.1:0", reader, **kwargs)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        running = Running(server, port, channel, pulse_pb2_grpc.PulseStub(channel), pulse_pb2_grpc.AdminStub(channel))
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.server.stop(grace=None).wait()


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def writer(store_dir) -> Iterator[RocksStore]:
    store = RocksStore(store_dir)
    yield store
    store.close()


@pytest.fixture
def make_reader(tmp_path) -> Iterator[Callable[..., RocksReader]]:
    """``make_reader(store_dir)`` -> a RocksReader with its own secondary dir, closed at teardown."""
    readers: list[RocksReader] = []

    def make(path) -> RocksReader:
        reader = RocksReader(path, tmp_path / "secondary" / str(len(readers)))
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture(autouse=True)
def _no_server_left_running():
    """Every test stops the servers it starts: a catch-up thread left behind keeps reading
    a store the next test may have deleted."""
    yield
    left = [t.name for t in threading.enumerate() if t.name in ("pulse-catch-up", "pulse-grpc-aio") and t.is_alive()]
    assert not left, f"server threads still running after the test: {left}"
