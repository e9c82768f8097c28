"""The bad-input matrix (``benchmarks/fault_matrix.py``): every case a real process that fails in one line.

Each case must exit with status 1, print one line on stderr that starts with
``invproto`` and names the culprit, finish within the time limit, and leave
no file or directory behind (see the module docstring of the matrix).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fault_matrix import CASES, TIME_LIMIT_S, Case, Outcome, Workspace, _prepare, run_case


def test_the_matrix_has_at_least_40_distinct_cases_in_every_area():
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names) >= 40
    assert {case.area for case in CASES} == {"config", "data", "checkpoint", "demo", "fid"}


def outcome(status=1, stderr="invproto: config key 'x' is bad\n", seconds=1.0, changed=()) -> Outcome:
    return Outcome(Case("c", "config", lambda ws: [], "'x'"), status, stderr, seconds, list(changed), "'x'")


@pytest.mark.parametrize("bad, problem", [
    (dict(status=0), "exit status 0"),
    (dict(stderr="Traceback (most recent call last):\ninvproto: config key 'x' is bad\n"), "2 lines"),
    (dict(stderr="invproto: something else\n"), "does not name"),
    (dict(stderr="config key 'x' is bad\n"), "does not start with 'invproto'"),
    (dict(seconds=TIME_LIMIT_S + 1), "took"),
    (dict(changed=["logs/2026_bad"]), "left behind"),
])
def test_the_verdict_sees_every_kind_of_failure(bad, problem):
    assert outcome().problems == []
    assert any(problem in found for found in outcome(**bad).problems)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    workspace = Workspace(Path(tmp_path_factory.mktemp("faults")))
    _prepare(workspace)
    return workspace


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_fails_in_one_line_and_leaves_nothing_behind(case, workspace):
    result = run_case(case, workspace)
    assert not result.problems, f"{result.problems}\nstderr:\n{result.stderr[-2000:]}"
