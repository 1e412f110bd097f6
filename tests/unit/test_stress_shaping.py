"""How stress is shaped: processes and duty cycle for CPU, pacing for network, the sink."""

import pytest

from stress import netsink
from stress.shaping import bytes_due, cpu_plan, mbps_to_bytes_per_s, ramp_fraction


@pytest.mark.parametrize(
    "target, cores, processes, duty",
    [
        (80, 2.0, 2, 0.8),  # more than one core: processes, not threads (GIL)
        (50, 2.0, 1, 1.0),  # exactly one core's worth: one process, fully busy
        (80, 0.5, 1, 0.4),  # a fractional quota: one process, duty cycled
        (100, 1.5, 2, 0.75),
        (100, 4.0, 4, 1.0),
    ],
)
def test_cpu_load_is_split_over_the_fewest_processes_at_equal_duty(target, cores, processes, duty):
    plan = cpu_plan(target, cores)
    assert plan.processes == processes
    assert plan.duty == pytest.approx(duty)


def test_no_process_is_ever_asked_for_more_than_one_core():
    for target in (1, 33, 66, 99, 100):
        for cores in (0.25, 1.0, 1.7, 3.0):
            plan = cpu_plan(target, cores)
            assert 0 < plan.duty <= 1.0
            assert plan.processes * plan.duty == pytest.approx(target / 100 * cores)


def test_ramp_rises_linearly_then_holds():
    assert ramp_fraction(0, 10) == 0
    assert ramp_fraction(2.5, 10) == 0.25
    assert ramp_fraction(10, 10) == 1
    assert ramp_fraction(99, 10) == 1
    assert ramp_fraction(0, 0) == 1


def test_bytes_due_is_rate_times_time_without_ramp():
    assert bytes_due(1000, 3, 0) == 3000
    assert bytes_due(1000, 0, 0) == 0


def test_bytes_due_integrates_the_ramp_and_never_exceeds_rate_times_time():
    assert bytes_due(1000, 2, 4) == pytest.approx(500)  # half-way up a 4 s ramp
    assert bytes_due(1000, 4, 4) == pytest.approx(2000)  # end of the ramp: the triangle
    assert bytes_due(1000, 6, 4) == pytest.approx(4000)  # then full rate
    for elapsed in (0.5, 1, 3, 7):
        assert bytes_due(1000, elapsed, 4) <= 1000 * elapsed


def test_mbps_are_megabits():
    assert mbps_to_bytes_per_s(8) == 1_000_000


ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "eth1\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
)


def test_default_gateway_is_read_from_the_route_table():
    assert netsink.parse_default_gateway(ROUTES) == "172.18.0.1"


def test_no_default_route_means_no_gateway():
    header_and_local_only = "\n".join(ROUTES.splitlines()[:2])
    assert netsink.parse_default_gateway(header_and_local_only) is None


def test_sink_order_is_request_then_environment_then_gateway_discard_port():
    chosen = netsink.choose_sink("10.0.1.7:5000", "10.0.9.9:9", ROUTES, 9)
    assert (chosen.host, chosen.port, chosen.source) == ("10.0.1.7", 5000, "request")
    chosen = netsink.choose_sink(None, "sink.lab:7", ROUTES, 9)
    assert (chosen.host, chosen.port, chosen.source) == ("sink.lab", 7, "environment")
    chosen = netsink.choose_sink(None, None, ROUTES, 9)
    assert (chosen.host, chosen.port, chosen.source) == ("172.18.0.1", 9, "default gateway")


def test_without_any_sink_the_reason_says_how_to_configure_one():
    with pytest.raises(netsink.SinkError, match="STRESS_NETWORK_SINK"):
        netsink.choose_sink(None, None, "", 9)


@pytest.mark.parametrize("text", ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", ":9", "h:x", "::1:9"])
def test_malformed_sinks_are_rejected(text):
    with pytest.raises(netsink.SinkError):
        netsink.parse_sink(text)


def test_ipv6_sinks_are_written_in_brackets():
    sink = netsink.parse_sink("[::1]:9")
    assert (sink.host, sink.port, sink.label()) == ("::1", 9, "[::1]:9")
