"""A version's role is derived from the dataset's pointers and its run (pure)."""

import pytest

from tollgate.serving import role_of

DATASET = {"champion_version": 3, "previous_version": 2, "canary": {"version": 6, "percent": 10}}


@pytest.mark.parametrize(("version", "run", "role"), [
    (3, {"status": "decided"}, "champion"),
    (2, {"status": "decided"}, "previous"),
    (4, {"status": "evaluating"}, "challenger"),    # trained, not decided yet
    (4, {"status": "evaluated"}, "challenger"),
    (1, {"status": "decided"}, "archived"),
    (5, {"status": "failed"}, "archived"),
    (1, None, "archived"),
    (6, {"status": "decided"}, "canary"),
    (7, {"status": "decided", "decision": "review", "review": {"status": "pending"}}, "in review"),
    (7, {"status": "decided", "decision": "keep", "review": {"status": "rejected"}}, "archived"),
])
def test_role_of(version, run, role):
    assert role_of(version, DATASET, run) == role
