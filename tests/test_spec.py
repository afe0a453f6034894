"""Dataset identity: one name pattern that maps one-to-one onto Cloud Run service and revision names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate import spec as specs
from tollgate.cloud import run as cloudrun

# Cloud Run: a service id is a DNS label of at most 49 characters, a revision name at most 63, and a service
# name with a traffic tag together at most 46 (the tag URL's label).
SERVICE_ID = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")
LARGEST_VERSION = 99_999


@pytest.mark.parametrize("name", ["chicago_taxi", "breast_cancer", "a", "x1", "taxi_2016_q3", "a" * 30])
def test_valid_names(name):
    assert specs.check_dataset_name(name) == name


@pytest.mark.parametrize("name", ["chicago-taxi", "Chicago.Taxi", "Chicago_Taxi", "chicago_taxi_", "_taxi",
                                  "chicago__taxi", "1taxi", "", "a" * 31, "taxi/2016", "taxi 2016", None, 7])
def test_invalid_names_are_refused_with_the_pattern(name):
    with pytest.raises(specs.SpecError) as refused:
        specs.check_dataset_name(name)
    assert specs.DATASET_NAME_RULE in str(refused.value)


def test_names_that_collided_before_cannot_all_exist():
    """`chicago_taxi`, `chicago-taxi` and `Chicago.Taxi` all became the service predictor-chicago-taxi."""
    valid = [n for n in ("chicago_taxi", "chicago-taxi", "Chicago.Taxi")
             if specs.DATASET_NAME.fullmatch(n)]
    assert valid == ["chicago_taxi"]


# dataset names up to 29 characters (the pattern's length lookahead is more than hypothesis can generate from),
# plus the longest ones by example
NAMES = st.from_regex(r"[a-z](?:_?[a-z0-9]){0,14}", fullmatch=True) | st.sampled_from(["a" * 30, "a_" * 14 + "bc"])


@given(NAMES, NAMES)
def test_every_name_maps_one_to_one_onto_valid_cloud_run_names(a, b):
    assert specs.DATASET_NAME.fullmatch(a) and specs.DATASET_NAME.fullmatch(b)
    service = cloudrun.service_id(a)
    assert SERVICE_ID.fullmatch(service)
    assert len(cloudrun.revision_id(a, LARGEST_VERSION)) <= 63
    assert len(service) + len(f"v{LARGEST_VERSION}") <= 46
    assert (cloudrun.service_id(a) == cloudrun.service_id(b)) == (a == b)


def test_a_spec_is_refused_at_load_when_its_name_does_not_fit(taxi_spec):
    with pytest.raises(specs.SpecError, match=r"spec: name: 'Chicago.Taxi' is not a valid dataset name"):
        specs.from_dict({**taxi_spec.raw, "name": "Chicago.Taxi"})
    with pytest.raises(specs.SpecError, match="not a valid dataset name"):
        cloudrun.service_id("taxi_")


def test_retention_keeps_at_least_the_label_window(taxi_spec):
    def with_monitoring(**monitoring):
        return specs.from_dict({**taxi_spec.raw, "monitoring": monitoring}).monitoring

    assert with_monitoring().retention_days is None                       # the tables' own expiry
    assert with_monitoring(retention_days=30).retention_days == 30.0
    assert with_monitoring(retention_days=1, label_window_hours=24).retention_days == 1.0
    with pytest.raises(specs.SpecError, match="retention_days: 2 days keeps less than the label window"):
        with_monitoring(retention_days=2)                                 # the default window: 168 hours
    with pytest.raises(specs.SpecError, match="retention_days"):
        with_monitoring(retention_days="a month")
