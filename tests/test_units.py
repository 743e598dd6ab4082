"""Specification of hwdb.units: typed quantities spell their unit, bits and bytes never mix."""

from __future__ import annotations

import pytest

from hwdb.units import MissingUnitError, UnitError, parse_bandwidth_gbytes_per_s, parse_duration_s


@pytest.mark.parametrize("text, gbytes_per_s", [
    ("100Gbps", 12.5), ("100Gb/s", 12.5), ("100Gbit/s", 12.5),  # gigabits: how links and NICs are sold
    ("25GBps", 25.0), ("25GB/s", 25.0),  # gigabytes
    ("1.6Tbps", 200.0), ("1.6Tb/s", 200.0), ("2TBps", 2000.0), ("2TB/s", 2000.0),
    ("800Mbps", 0.1), ("800Mb/s", 0.1), ("500MBps", 0.5), ("500MB/s", 0.5),
    (" 400 Gbps ", 50.0), (".5GBps", 0.5),
])
def test_bandwidth_is_parsed_to_gigabytes_per_second_with_bits_divided_by_eight(text, gbytes_per_s):
    assert parse_bandwidth_gbytes_per_s(text) == pytest.approx(gbytes_per_s)


def test_a_gigabit_is_an_eighth_of_a_gigabyte():
    assert parse_bandwidth_gbytes_per_s("8Gbps") == parse_bandwidth_gbytes_per_s("1GBps") == 1.0


@pytest.mark.parametrize("text", ["100gbps", "100GBPS", "100gb/s", "100Gbit", "100", "Gbps", "-5Gbps", "1e3Gbps",
                                  "fastGbps", "", True])
def test_a_bandwidth_whose_unit_is_ambiguous_or_missing_is_refused(text):
    with pytest.raises(UnitError, match="expected a bandwidth like 100Gbps"):
        parse_bandwidth_gbytes_per_s(text)


@pytest.mark.parametrize("text, seconds", [
    ("2s", 2.0), ("50ms", 0.05), ("300us", 3e-4), ("5min", 300.0), ("5m", 300.0), (" 1.5 s ", 1.5),
    ("1e-3s", 1e-3), ("0s", 0.0),
])
def test_durations_are_parsed_to_seconds(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_milliseconds_come_out_exactly_as_the_slo_says():
    assert parse_duration_s("50ms") * 1e3 == 50.0 and parse_duration_s("2s") * 1e3 == 2000.0


@pytest.mark.parametrize("text", ["2", 2, 0.5, "2 "])
def test_a_bare_number_needs_a_unit(text):
    with pytest.raises(MissingUnitError, match="needs a unit"):
        parse_duration_s(text)


@pytest.mark.parametrize("text", ["2S", "2 sec", "2h", "-2s", "s", "fast", True, None])
def test_an_unknown_duration_unit_is_refused(text):
    with pytest.raises(UnitError, match="expected a duration like 2s or 50ms") as info:
        parse_duration_s(text)
    assert not isinstance(info.value, MissingUnitError)
