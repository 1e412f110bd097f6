"""Stress request validation: good requests parse, bad ones say exactly why."""

import pytest

from stress.cgroup import Allowance
from stress.config import StressLimits
from stress.params import (
    Bounds,
    ParamError,
    parse_combined,
    parse_cpu,
    parse_memory,
    parse_network,
    parse_stop,
)

MIB = 1024 * 1024
LIMITS = StressLimits(
    max_duration_s=600, default_duration_s=60, max_memory_mb=1024,
    memory_headroom_mb=64, max_network_mbps=500,
)
ROOMY = Bounds.from_limits(LIMITS, Allowance(2.0, "cores", 8192 * MIB, "node memory"))


def reason(parse, values, bounds=ROOMY):
    with pytest.raises(ParamError) as caught:
        parse(values, bounds)
    return caught.value.parameter, caught.value.reason


def test_cpu_request_parses_target_duration_and_ramp():
    req = parse_cpu({"target": "80", "duration": "30", "ramp": "10"}, ROOMY)
    assert (req.target_percent, req.timing.duration_s, req.timing.ramp_s) == (80, 30, 10)


def test_duration_defaults_to_the_configured_default_and_ramp_to_zero():
    req = parse_cpu({"target": "50"}, ROOMY)
    assert (req.timing.duration_s, req.timing.ramp_s) == (60, 0)


def test_json_numbers_are_accepted_as_well_as_strings():
    req = parse_memory({"mb": 128, "duration": 5.5}, ROOMY)
    assert (req.mb, req.timing.duration_s) == (128, 5.5)


@pytest.mark.parametrize(
    "values, parameter, words",
    [
        ({}, "target", "target is required"),
        ({"target": "abc"}, "target", "must be a number, got 'abc'"),
        ({"target": "nan"}, "target", "finite"),
        ({"target": "inf"}, "target", "finite"),
        ({"target": "-5"}, "target", "must be > 0"),
        ({"target": "0"}, "target", "must be > 0"),
        ({"target": "101"}, "target", "at most 100 percent"),
        ({"target": "50", "duration": "0"}, "duration", "must be > 0 seconds"),
        ({"target": "50", "duration": "-1"}, "duration", "must be > 0 seconds"),
        ({"target": "50", "duration": "601"}, "duration", "at most 600 seconds"),
        ({"target": "50", "duration": "ten"}, "duration", "must be a number"),
        ({"target": "50", "ramp": "-1"}, "ramp", "must be >= 0"),
        ({"target": "50", "duration": "10", "ramp": "11"}, "ramp", "must not exceed duration"),
        ({"target": "50", "duraton": "10"}, "duraton", "unknown parameter"),
        ({"target": True}, "target", "must be a number"),
    ],
)
def test_bad_cpu_parameters_are_rejected_with_the_reason(values, parameter, words):
    got_parameter, got_reason = reason(parse_cpu, values)
    assert got_parameter == parameter
    assert words in got_reason


@pytest.mark.parametrize(
    "values, words",
    [
        ({}, "mb is required"),
        ({"mb": "1.5"}, "whole number"),
        ({"mb": "0"}, "must be > 0"),
        ({"mb": "-10"}, "must be > 0"),
        ({"mb": "2048"}, "at most 1024 MB (the configured cap)"),
    ],
)
def test_bad_memory_parameters_are_rejected_with_the_reason(values, words):
    assert words in reason(parse_memory, values)[1]


def test_memory_is_capped_below_the_container_limit_minus_headroom():
    tight = Bounds.from_limits(LIMITS, Allowance(1.0, "cgroup quota", 256 * MIB, "cgroup limit"))
    assert tight.max_memory_mb == 192
    assert parse_memory({"mb": "192"}, tight).mb == 192
    parameter, text = reason(parse_memory, {"mb": "193"}, tight)
    assert parameter == "mb"
    assert "at most 192 MB (cgroup limit 256 MB minus 64 MB headroom)" in text


def test_a_container_smaller_than_the_headroom_allows_no_memory_stress():
    tiny = Bounds.from_limits(LIMITS, Allowance(1.0, "cores", 32 * MIB, "cgroup limit"))
    assert tiny.max_memory_mb == 0
    assert "at most 0 MB" in reason(parse_memory, {"mb": "1"}, tiny)[1]


@pytest.mark.parametrize(
    "values, parameter, words",
    [
        ({}, "mbps", "mbps is required"),
        ({"mbps": "fast"}, "mbps", "must be a number"),
        ({"mbps": "0"}, "mbps", "must be > 0"),
        ({"mbps": "501"}, "mbps", "at most 500 Mbit/s"),
        ({"mbps": "5", "target": "a:1", "sink": "b:2"}, "target", "not both"),
    ],
)
def test_bad_network_parameters_are_rejected_with_the_reason(values, parameter, words):
    got_parameter, got_reason = reason(parse_network, values)
    assert got_parameter == parameter
    assert words in got_reason


def test_network_request_keeps_the_sink_as_given_under_either_name():
    assert parse_network({"mbps": "5", "target": "10.0.0.5:9"}, ROOMY).sink == "10.0.0.5:9"
    assert parse_network({"mbps": "5", "sink": "10.0.0.5:9"}, ROOMY).sink == "10.0.0.5:9"
    assert parse_network({"mbps": "5"}, ROOMY).sink is None


def test_combined_request_shares_duration_and_ramp_between_the_kinds_it_names():
    req = parse_combined({"cpu": "90", "network": "70", "duration": "20", "ramp": "5"}, ROOMY)
    assert req.memory is None
    assert (req.cpu.target_percent, req.network.mbps) == (90, 70)
    assert req.cpu.timing == req.network.timing
    assert (req.cpu.timing.duration_s, req.cpu.timing.ramp_s) == (20, 5)


@pytest.mark.parametrize(
    "values, parameter, words",
    [
        ({"duration": "10"}, None, "at least one of cpu=, memory=, network="),
        ({"cpu": "150"}, "cpu", "at most 100 percent"),
        ({"memory": "4096"}, "memory", "at most 1024 MB"),
        ({"network": "-1"}, "network", "must be > 0"),
        ({"cpu": "50", "target": "10.0.0.5:9"}, "target", "only meaningful with network="),
        ({"cpu": "50", "mb": "10"}, "mb", "unknown parameter"),
    ],
)
def test_bad_combined_parameters_are_rejected_with_the_reason(values, parameter, words):
    got_parameter, got_reason = reason(parse_combined, values)
    assert got_parameter == parameter
    assert words in got_reason


def test_stop_defaults_to_every_kind_and_accepts_one_kind():
    assert parse_stop({}) == ("cpu", "memory", "network")
    assert parse_stop({"kind": "memory"}) == ("memory",)
    with pytest.raises(ParamError):
        parse_stop({"kind": "disk"})
