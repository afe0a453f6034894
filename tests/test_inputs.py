"""Request checking (tollgate.inputs): every problem named with its instance and field; nothing a client sends
crashes it."""

from __future__ import annotations

import math
import struct
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.predictor import oip
from tollgate import inputs

GOOD = {"trip_miles": 2.5, "trip_seconds": 600, "trip_start_hour": 9, "trip_start_day": 3, "trip_start_month": 5,
        "pickup_community_area": 8, "dropoff_community_area": 32, "pickup_latitude": 41.89,
        "pickup_longitude": -87.63, "dropoff_latitude": 41.88, "dropoff_longitude": -87.62,
        "payment_type": "Cash", "company": None}


@pytest.fixture(scope="module")
def checker(taxi_spec):
    return inputs.Checker(taxi_spec, max_instances=100)


def problems(fn, *args):
    with pytest.raises(inputs.BadRequest) as caught:
        fn(*args)
    return caught.value


def test_good_instances_become_columns(checker, taxi_spec):
    cols = checker.instances({"instances": [GOOD, {**GOOD, "trip_seconds": None, "company": "Flash Cab"}],
                              "parameters": {}})
    assert cols.numeric.shape == (2, len(taxi_spec.feature_lists.numeric))
    assert math.isnan(cols.numeric[1, taxi_spec.feature_lists.numeric.index("trip_seconds")])
    assert cols.categorical[taxi_spec.feature_lists.categorical.index("company")] == [None, "Flash Cab"]


def test_every_problem_is_listed_with_index_and_field(checker):
    bad = problems(checker.instances, {"instances": [
        GOOD,
        {**GOOD, "trip_miles": "far", "colour": "red"},
        {k: v for k, v in GOOD.items() if k != "payment_type"},
        {**GOOD, "trip_start_hour": 25, "pickup_latitude": float("inf")},
        {**GOOD, "payment_type": "Bitcoin", "trip_miles": True},
        "not an object",
    ]})
    assert bad.status == 400
    text = "\n".join(bad.problems)
    for expected in ("instances[1].trip_miles: must be a finite number, got 'far'",
                     "instances[1].colour: unknown field", "instances[2].payment_type: required",
                     "instances[3].trip_start_hour: 25.0 is above the maximum 23",
                     "instances[3].pickup_latitude: must be a finite number",
                     "instances[4].payment_type: 'Bitcoin' is not one of", "instances[4].trip_miles: must be a finite",
                     "instances[5]: must be an object"):
        assert expected in text, text
    assert "instances[0]" not in text


@pytest.mark.parametrize("body, status, fragment", [
    ([GOOD], 400, "JSON object with an `instances` list"),
    ({"instances": GOOD}, 400, "`instances` must be a list"),
    ({"instances": []}, 400, "no instances"),
    ({"instances": [GOOD] * 101}, 400, "101 instances, more than the limit of 100"),
    ({"instances": [GOOD], "parameters": 3}, 400, "`parameters` must be an object"),
    ({"instances": [GOOD], "extra": 1}, 400, "extra: unknown top-level field"),
])
def test_malformed_bodies(checker, body, status, fragment):
    bad = problems(checker.instances, body)
    assert bad.status == status and any(fragment in p for p in bad.problems), bad.problems


def test_problems_are_capped(checker):
    bad = problems(checker.instances, {"instances": [{"trip_miles": "x"}] * 100})
    assert len(bad.problems) == inputs.MAX_PROBLEMS + 1 and bad.problems[-1].startswith("... and ")


def tensor(name, data, datatype=None):
    kind = datatype or ("BYTES" if name in ("payment_type", "company") else "FP64")
    return {"name": name, "shape": [len(data)], "datatype": kind, "data": data}


def v2_body(rows):
    return {"inputs": [tensor(name, [row[name] for row in rows]) for name in GOOD]}


def test_v2_tensors_match_instances(checker):
    rows = [GOOD, {**GOOD, "trip_miles": 7.0, "company": "Flash Cab"}]
    a, b = oip.tensors(checker, v2_body(rows)), checker.instances({"instances": rows})
    np.testing.assert_array_equal(a.numeric, b.numeric)
    assert a.categorical == b.categorical


def test_v2_problems(checker):
    body = v2_body([GOOD, GOOD])
    body["inputs"][0]["data"] = [1.0, -3.0]                    # trip_miles below its minimum
    body["inputs"][11]["datatype"] = "FP64"                     # payment_type must be BYTES
    body["inputs"].append(tensor("colour", ["red", "blue"]))
    del body["inputs"][2]                                       # trip_start_hour missing
    text = "\n".join(problems(partial(oip.tensors, checker), body).problems)
    assert "payment_type): datatype must be BYTES" in text and "(colour): unknown input" in text
    assert "`trip_start_hour` is missing" in text
    body = v2_body([GOOD, GOOD])
    body["inputs"][0]["data"] = [1.0, -3.0]
    body["inputs"][1]["data"] = ["x", 1.0]
    text = "\n".join(problems(partial(oip.tensors, checker), body).problems)
    assert "instances[1].trip_miles: -3 is below the minimum 0" in text
    assert "instances[0].trip_seconds: must be a finite number, got 'x'" in text
    body = v2_body([GOOD, GOOD])
    body["inputs"][0]["shape"] = [3]
    assert "shape [3] does not match 2 values" in problems(partial(oip.tensors, checker), body).problems[0]


def test_v2_binary_tensors(checker):
    """The binary tensor extension, as tritonclient sends it by default."""
    header, chunks = {"inputs": []}, []
    for name, value in GOOD.items():
        if name in ("payment_type", "company"):
            raw = (value or "Flash Cab").encode()
            chunk, kind = struct.pack("<I", len(raw)) + raw, "BYTES"
        else:
            chunk, kind = np.asarray([value], dtype="<f4").tobytes(), "FP32"
        header["inputs"].append({"name": name, "shape": [1, 1], "datatype": kind,
                                 "parameters": {"binary_data_size": len(chunk)}})
        chunks.append(chunk)
    cols = oip.tensors(checker, header, b"".join(chunks))
    assert cols.numeric[0, 0] == pytest.approx(2.5) and cols.categorical[1] == ["Flash Cab"]
    assert "does not fit" in problems(partial(oip.tensors, checker), header, b"".join(chunks)[:-3]).problems[0]


# -- property-based: whatever arrives, the answer is columns or a BadRequest, never a crash ----------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4),
                           max_leaves=20)


v2_tensors = st.fixed_dictionaries(
    {"name": st.sampled_from([*GOOD, "other"]) | json_values},
    optional={"shape": st.lists(st.integers(-1, 3), max_size=2) | json_values,
              "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL"]) | json_values,
              "data": st.lists(st.none() | st.floats() | st.integers() | st.text(max_size=3), max_size=3) | json_values,
              "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-2, 9)})
              | json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values | st.fixed_dictionaries({"instances": st.lists(
    st.fixed_dictionaries({}, optional={k: json_values for k in GOOD}), max_size=5)})
    | st.fixed_dictionaries({"inputs": st.lists(v2_tensors, max_size=14)}), binary=st.binary(max_size=16))
def test_any_json_is_answered(checker, body, binary):
    for check in (checker.instances, lambda b: oip.tensors(checker, b, binary)):
        try:
            cols = check(body)
        except inputs.BadRequest as exc:
            assert exc.problems and exc.status in (400, 413)
        else:
            assert len(cols) >= 1 and np.isfinite(cols.numeric[~np.isnan(cols.numeric)]).all()


def instance_strategy(spec):
    fields = {}
    for name in spec.features:
        column = spec.columns[name]
        if name in spec.feature_lists.numeric:
            value = st.floats(min_value=column.min if column.min is not None else -1e9,
                              max_value=column.max if column.max is not None else 1e9, allow_nan=False)
        else:
            value = st.sampled_from(list(column.allowed)) if column.allowed else st.text(max_size=20)
        fields[name] = (value | st.none()) if column.nullable else value
    return st.fixed_dictionaries(fields)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_valid_instance_is_accepted(checker, taxi_spec, data):
    rows = data.draw(st.lists(instance_strategy(taxi_spec), min_size=1, max_size=10))
    cols = checker.instances({"instances": rows})
    assert len(cols) == len(rows)
    again = oip.tensors(checker, v2_body([{**GOOD, **row} for row in rows]))
    np.testing.assert_array_equal(again.numeric, cols.numeric)
