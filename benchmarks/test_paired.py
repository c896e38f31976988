"""benchmarks/paired.py: the alternation of the two cases, and one real pair end to end."""

import sys

import pytest

import paired


def test_cases_alternate_ab_then_ba_after_a_warm_up(monkeypatch):
    calls = []

    def fake_runner(scenario, case):
        def run():
            calls.append(case)
            return {"a": 1.0, "b": 2.0}[case]
        return run

    monkeypatch.setattr(paired, "case_runner", fake_runner)
    times_a, times_b = paired.paired(None, "a", "b", 4)
    assert calls == ["a", "b"] + ["a", "b", "b", "a"] * 2
    assert times_a == [1.0] * 4 and times_b == [2.0] * 4


def test_prints_one_line_per_pair(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["paired.py", "--rounds", "2", "--pairs", "small_tiles:blend:copyto_hot"])
    paired.main()
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["scenario", "A"]
    fields = line.split()
    assert fields[:3] == ["small_tiles", "blend", "copyto_hot"] and float(fields[3]) > 0


def test_refuses_fewer_than_two_rounds(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["paired.py", "--rounds", "1"])
    with pytest.raises(SystemExit) as exit_info:
        paired.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--rounds must be at least 2" in err and "got 1" in err
