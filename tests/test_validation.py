"""Reading and the data contract (pure): every bad-input kind gets a specific reason, chunked
reading changes nothing, and each check's action (drop, report, reject) does what it says."""

import gzip
import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tollgate import contract, validation
from tollgate import spec as specs

HEADER = ("pickup_community_area,fare,trip_start_month,trip_start_hour,trip_start_day,trip_start_timestamp,"
          "pickup_latitude,pickup_longitude,dropoff_latitude,dropoff_longitude,trip_miles,pickup_census_tract,"
          "dropoff_census_tract,payment_type,company,trip_seconds,dropoff_community_area,tips")


@pytest.fixture
def batch(taxi):
    return taxi.head(400).copy()


def run_file(tmp_path, content: bytes, spec, **kwargs):
    out = tmp_path / "curated.parquet"
    result = validation.validate_file(io.BytesIO(content), spec, out, size=len(content), **kwargs)
    return result, out


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty_file"),
    (b"   \n\n", "empty_file"),
    ((HEADER + "\n").encode(), "no_rows"),
    (HEADER.encode(), "no_rows"),
    (b"\x00\x01\x02garbage\xff" * 100, "not_a_table"),
    ((HEADER + "\n1,Café\n").encode("latin-1"), "bad_encoding"),
    ((HEADER.replace(",", ";") + "\n" + ";".join(["1"] * 18) + "\n").encode(), "wrong_delimiter"),
    (b"\x1f\x8b\x08\x00broken", "corrupt_gzip"),
    (b"PAR1 not really parquet", "unreadable_parquet"),
    (b"fare,trip_miles\n1,2\n", "missing_columns"),
    ((HEADER + ",surprise\n").encode(), "unexpected_columns"),
    ((HEADER + "\n" + "x,y\n" * 50).encode(), "malformed_csv"),
])
def test_unreadable_files_have_specific_reasons(tmp_path, taxi_spec, content, reason):
    result, out = run_file(tmp_path, content, taxi_spec)
    assert (result.status, result.reason) == ("rejected", reason)
    assert result.message and "Traceback" not in result.message
    assert not out.exists()


def test_a_file_over_the_size_limit_is_rejected_before_it_is_read(tmp_path, taxi_spec):
    small = taxi_spec.model_copy(update={"max_file_bytes": 1000})
    content = (HEADER + "\n").encode() * 200
    result, _ = run_file(tmp_path, content, small)
    assert result.reason == "file_too_large"
    assert "split it" in result.message


def test_bad_encoding_after_the_first_chunk_is_named(tmp_path, batch, taxi_spec):
    text = batch.to_csv(index=False).encode()
    content = text + b"\n".join([text.splitlines()[1].replace(b"Credit Card", b"Cr\xe9dit")] * 3) + b"\n"
    result, _ = run_file(tmp_path, content, taxi_spec, chunk_bytes=4096)
    assert (result.status, result.reason) == ("rejected", "bad_encoding")


def test_csv_bom_gzip_and_parquet_give_the_same_curated_rows(tmp_path, batch, taxi_spec):
    text = batch.to_csv(index=False).encode()
    buf = io.BytesIO()
    batch.to_parquet(buf)
    frames = []
    for i, content in enumerate([text, b"\xef\xbb\xbf" + text, gzip.compress(text), buf.getvalue()]):
        out = tmp_path / f"out-{i}.parquet"
        result = validation.validate_file(io.BytesIO(content), taxi_spec, out, size=len(content))
        assert result.status == "valid", result.message
        frames.append(pd.read_parquet(out))
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])
    assert len(frames[0]) == 400 and frames[0]["trip_start_hour"].dtype == np.int64


def test_chunked_reading_gives_the_same_result_and_bytes(tmp_path, taxi, taxi_spec):
    text = taxi.head(3000).to_csv(index=False).encode()
    whole, out_whole = run_file(tmp_path, text, taxi_spec)
    out_chunked = tmp_path / "chunked.parquet"
    chunked = validation.validate_file(io.BytesIO(text), taxi_spec, out_chunked, chunk_bytes=16 * 1024)
    assert whole.status == chunked.status == "valid"
    assert (whole.rows_in, whole.rows_out) == (chunked.rows_in, chunked.rows_out) == (3000, 3000 - whole.rows_dropped)
    assert [(c.name, c.failed_rows) for c in whole.checks] == [(c.name, c.failed_rows) for c in chunked.checks]
    assert pq.ParquetFile(out_chunked).metadata.num_row_groups > 1
    pd.testing.assert_frame_equal(pd.read_parquet(out_whole), pd.read_parquet(out_chunked))


def test_the_same_rows_curate_to_the_same_bytes_whatever_order_the_spec_lists_its_columns(tmp_path, batch, taxi_spec):
    """A spec read back from Firestore has its columns in no set order; the dataset keeps a batch once by the sha256
    of its curated bytes, so a file dropped again must curate to the same bytes."""
    content = batch.to_csv(index=False).encode()
    raw = taxi_spec.raw
    backwards = specs.from_dict({**raw, "columns": dict(reversed(list(raw["columns"].items())))})
    assert list(backwards.columns) != list(taxi_spec.columns)
    _, forwards_out = run_file(tmp_path, content, taxi_spec)
    backwards_out = tmp_path / "backwards.parquet"
    assert validation.validate_file(io.BytesIO(content), backwards, backwards_out).status == "valid"
    assert forwards_out.read_bytes() == backwards_out.read_bytes()


def test_values_of_the_wrong_type_are_named_by_row_in_any_chunk(tmp_path, taxi, taxi_spec):
    df = taxi.head(2000).astype({"trip_miles": object})
    df.loc[[3, 1500], "trip_miles"] = "lots"            # trip_miles: on_fail drop
    result, out = run_file(tmp_path, df.to_csv(index=False).encode(), taxi_spec, chunk_bytes=32 * 1024)
    assert result.status == "valid"
    check = {c.name: c for c in result.checks}["trip_miles:type"]
    assert check.failed_rows == 2
    assert [e["row"] for e in check.examples] == [4, 1501]
    assert len(pd.read_parquet(out)) == result.rows_out


@pytest.mark.parametrize("type_error", [False, True])
def test_lines_with_the_wrong_number_of_fields_are_dropped_and_shown(tmp_path, batch, taxi_spec, type_error):
    if type_error:                                   # the chunk is parsed twice (typed, then as text)
        batch = batch.astype({"trip_miles": object})
        batch.loc[5, "trip_miles"] = "far"
    content = batch.to_csv(index=False).encode() + b"1,2,3\n"
    result, _ = run_file(tmp_path, content, taxi_spec)
    assert result.status == "valid" and result.rows_in == 401 and result.rows_out <= 400
    malformed = {c.name: c for c in result.checks}["malformed_lines"]
    assert malformed.failed_rows == 1 and malformed.examples[0]["text"] == "1,2,3"


def test_missing_and_unexpected_columns_reject(batch, taxi_spec):
    missing = validation.validate(batch.drop(columns=["fare"]), taxi_spec)
    assert (missing.status, missing.reason) == ("rejected", "missing_columns")
    assert "fare" in missing.message
    extra = validation.validate(batch.assign(surprise=1), taxi_spec)
    assert (extra.status, extra.reason) == ("rejected", "unexpected_columns")
    assert "surprise" in extra.message


def test_the_2016_outlier_is_caught_by_a_rule(taxi, taxi_spec):
    big = taxi[(taxi.fare > 600)]
    assert len(big) == 1                               # the $700.07, 0-mile fare
    result = validation.validate(pd.concat([taxi.head(300), big]), taxi_spec)
    assert result.status == "valid"
    failed = {c.name: c for c in result.checks}
    assert failed["large_fare_needs_distance"].failed_rows == 1
    assert failed["large_fare_needs_distance"].examples[0]["fare"] == pytest.approx(700.07)
    assert (result.data["fare"] > 600).sum() == 0


def test_drop_report_and_reject_actions(batch, taxi_spec):
    bad_type = batch.astype({"trip_miles": object})
    bad_type.loc[:4, "trip_miles"] = "lots"           # trip_miles: on_fail drop
    result = validation.validate(bad_type, taxi_spec)
    assert result.status == "valid"
    assert {c.name: c.failed_rows for c in result.checks}["trip_miles:type"] == 5
    assert len(result.data) == result.rows_out

    no_duration = batch.copy()
    no_duration.loc[:9, ["fare", "trip_seconds"]] = [9.5, 0]   # fare_needs_duration: on_fail report
    reported = validation.validate(no_duration, taxi_spec)
    check = {c.name: c for c in reported.checks}["fare_needs_duration"]
    assert check.action == "report" and check.failed_rows >= 10
    assert (reported.data["trip_seconds"] == 0).sum() >= 10     # reported rows are kept

    bad_time = batch.copy()
    bad_time.loc[0, "trip_start_timestamp"] = -5      # trip_start_timestamp: on_fail reject
    rejected = validation.validate(bad_time, taxi_spec)
    assert (rejected.status, rejected.reason) == ("rejected", "rule_rejected")
    assert "trip_start_timestamp:range" in rejected.message


def test_too_many_dropped_rows_reject_the_batch(batch, taxi_spec):
    bad = batch.copy()
    bad.loc[: len(bad) // 2, "payment_type"] = "Bitcoin"
    result = validation.validate(bad, taxi_spec)
    assert (result.status, result.reason) == ("rejected", "too_many_dropped")
    assert "20%" in result.message
    assert {c.name: c.failed_rows for c in result.checks}["payment_type:allowed"] == len(bad) // 2 + 1


def test_too_few_rows(taxi, taxi_spec):
    result = validation.validate(taxi.head(10), taxi_spec)
    assert (result.status, result.reason) == ("rejected", "too_few_rows")


def _spec_with(taxi_spec, **columns):
    raw = {**taxi_spec.raw, "columns": {**taxi_spec.raw["columns"],
                                         **{k: {**taxi_spec.raw["columns"][k], **v} for k, v in columns.items()}}}
    return specs.from_dict(raw)


def test_uniqueness_holds_across_chunks(tmp_path, taxi, taxi_spec):
    spec = _spec_with(taxi_spec, trip_start_timestamp={"unique": True, "on_fail": "drop"})
    df = taxi.head(2000).drop_duplicates("trip_start_timestamp").reset_index(drop=True)
    df = pd.concat([df, df.iloc[[0, 1, 2]]], ignore_index=True)     # repeats land in a later chunk
    result, out = run_file(tmp_path, df.to_csv(index=False).encode(), spec, chunk_bytes=16 * 1024)
    assert result.status == "valid"
    assert {c.name: c.failed_rows for c in result.checks}["trip_start_timestamp:unique"] == 3
    assert pd.read_parquet(out)["trip_start_timestamp"].is_unique


def test_empty_values_never_repeat_a_unique_key(tmp_path):
    spec = specs.from_dict({"name": "ids", "task": "regression", "target": "y", "min_rows": 1,
                            "max_drop_fraction": 0.5, "policy": {"threshold": 0.5},
                            "columns": {"id": {"type": "int", "unique": True}, "y": {"type": "float"}},
                            "features": {"numeric": ["id"]}})
    content = b"id,y\n1,0.5\n,0.1\n2,0.2\n,0.3\n1,0.9\n"
    result, out = run_file(tmp_path, content, spec)
    assert result.status == "valid" and result.rows_out == 4
    check = {c.name: c for c in result.checks}["id:unique"]
    assert check.failed_rows == 1 and check.examples == [{"row": 5, "id": 1}]


def test_robust_outliers_are_reported_or_dropped_as_declared(taxi, taxi_spec):
    df = taxi.head(1000).copy()
    df.loc[:2, "trip_seconds"] = 80_000.0              # within the declared range, far outside the data
    reported = validation.validate(df, _spec_with(taxi_spec, trip_seconds={"outliers": {"method": "mad", "k": 30}}))
    check = {c.name: c for c in reported.checks}["trip_seconds:outlier"]
    assert check.action == "report" and check.failed_rows == 3 and check.examples[0]["trip_seconds"] == 80_000
    assert (reported.data["trip_seconds"] == 80_000).sum() == 3
    dropping = _spec_with(taxi_spec, trip_seconds={"outliers": {"method": "iqr", "k": 20, "on_fail": "drop"}})
    dropped = validation.validate(df, dropping)
    assert (dropped.data["trip_seconds"] == 80_000).sum() == 0
    assert dropped.rows_out == len(dropped.data)
    flat = validation.validate(df, _spec_with(taxi_spec, tips={"outliers": {"method": "iqr"}}))
    assert "tips:outlier" not in {c.name for c in flat.checks}     # mostly zero: no spread, no fences


def test_outlier_drops_in_the_file_path_rewrite_the_curated_file(tmp_path, taxi, taxi_spec):
    df = taxi.head(1000).copy()
    df.loc[:2, "trip_seconds"] = 80_000.0
    spec = _spec_with(taxi_spec, trip_seconds={"outliers": {"method": "iqr", "k": 20, "on_fail": "drop"}})
    result, out = run_file(tmp_path, df.to_csv(index=False).encode(), spec, chunk_bytes=32 * 1024)
    curated = pd.read_parquet(out)
    assert len(curated) == result.rows_out and (curated["trip_seconds"] == 80_000).sum() == 0
    assert not list(tmp_path.glob("*.contract"))     # the staging file is gone


def test_the_contract_is_a_pandera_schema(taxi_spec):
    schema = contract.contract_schema(taxi_spec)
    assert set(schema.columns) == set(taxi_spec.columns)
    names = {c.name for c in schema.columns["payment_type"].checks}
    assert names == {"payment_type:allowed"}
    assert [c.name for c in schema.checks] == [r.name for r in taxi_spec.rules]
    assert not schema.columns["fare"].nullable


def test_a_rule_naming_an_undeclared_column_is_refused_when_the_spec_loads(taxi_spec):
    """Before, the validator found out (`bad_rule`) on every batch; now the spec is refused at load."""
    raw = {**taxi_spec.raw, "rules": [{"name": "typo", "expr": "fare > no_such_column"}]}
    with pytest.raises(specs.SpecError, match=r"rules\[0\]\.expr: rule 'typo': `no_such_column` is not a declared"):
        specs.from_dict(raw)


def test_curated_bytes_are_deterministic(tmp_path, batch, taxi_spec):
    """Same batch → same Parquet bytes → same content address under curated/."""
    content = batch.to_csv(index=False).encode()
    first, out_first = run_file(tmp_path, content, taxi_spec)
    out_again = tmp_path / "again.parquet"
    validation.validate_file(io.BytesIO(content), taxi_spec, out_again, size=len(content))
    assert out_first.read_bytes() == out_again.read_bytes()


def test_spec_errors_name_the_field():
    with pytest.raises(specs.SpecError, match="policy"):
        specs.from_dict({"name": "x", "task": "regression", "target": "y", "columns": {"y": {}, "a": {}},
                         "features": {"numeric": ["a"]}})
    with pytest.raises(specs.SpecError, match="not declared"):
        specs.from_dict({"name": "x", "task": "regression", "target": "y", "columns": {"y": {}},
                         "features": {"numeric": ["a"]}, "policy": {"threshold": 1}})
    base = {"name": "x", "task": "regression", "target": "y", "columns": {"y": {}, "a": {}},
            "features": {"numeric": ["a"]}, "policy": {"threshold": 1}}
    with pytest.raises(specs.SpecError, match="outliers.method"):
        specs.from_dict({**base, "columns": {"y": {}, "a": {"outliers": {"method": "zscore"}}}})
    with pytest.raises(specs.SpecError, match="drift"):
        specs.from_dict({**base, "drift": {"psi": {"warn": 0.5, "severe": 0.1}}})


# -- resource bounds: a hostile file cannot make the validator hold more than the spec allows ---------------
def gzip_of(parts, total: int) -> bytes:
    """gzip of the ``parts`` repeated until ``total`` bytes, compressed in a stream (never held whole)."""
    import zlib

    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    out, written, i = [], 0, 0
    while written < total:
        part = parts[i % len(parts)]
        out.append(packer.compress(part))
        written, i = written + len(part), i + 1
    out.append(packer.flush())
    return b"".join(out)


def test_a_gzip_holding_one_256_mib_line_is_rejected_in_bounded_memory(tmp_path, taxi_spec):
    import tracemalloc

    content = gzip_of([(HEADER + "\n").encode()] + [b"x" * 2**20] * 256, 256 * 2**20)
    assert len(content) < 400 * 1024     # the case: a ~260 KB file
    tracemalloc.start()
    try:
        result, out = run_file(tmp_path, content, taxi_spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.status, result.reason) == ("rejected", "line_too_long")
    assert f"more than the {taxi_spec.max_line_bytes} the spec allows (max_line_bytes)" in result.message
    assert peak < 80 * 2**20, f"the reader held {peak / 2**20:.0f} MiB for a 256 MiB line"
    assert not out.exists()


def test_a_long_line_inside_a_chunk_is_rejected_too(tmp_path, batch, taxi_spec):
    text = batch.to_csv(index=False).encode()
    long_line = b",".join([b"1"] * 17) + b"," + b"9" * 3000 + b"\n"
    spec = taxi_spec.model_copy(update={"max_line_bytes": 2000})
    result, _ = run_file(tmp_path, text + long_line + text.split(b"\n", 1)[1], spec)
    assert (result.status, result.reason) == ("rejected", "line_too_long")
    assert "3034 bytes long" in result.message


def test_max_file_bytes_caps_what_a_gzip_decompresses_to(tmp_path, batch, taxi_spec):
    text = batch.to_csv(index=False).encode()
    body = text.split(b"\n", 1)[1]
    content = gzip_of([text] + [body] * 40, 2 * 2**20)           # ~2 MiB of rows
    small = taxi_spec.model_copy(update={"max_file_bytes": 2**20})    # the compressed file is far below it
    assert len(content) < small.max_file_bytes
    result, out = run_file(tmp_path, content, small, chunk_bytes=256 * 1024)
    assert (result.status, result.reason) == ("rejected", "file_too_large")
    assert "decompresses to more than" in result.message and not out.exists()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_header_with_more_columns_than_allowed_is_rejected_before_it_is_parsed(tmp_path, taxi_spec, kind):
    wide = HEADER + "," + ",".join(f"extra_{i}" for i in range(5000))
    if kind == "csv":
        content = (wide + "\n" + ",".join(["1"] * (18 + 5000)) + "\n").encode()
    else:
        frame = pd.DataFrame({name: [1.0] for name in wide.split(",")})
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        content = buffer.getvalue()
    result, _ = run_file(tmp_path, content, taxi_spec)
    assert (result.status, result.reason) == ("rejected", "too_many_columns")
    assert "5018 columns, more than the 1000 the spec allows (max_columns; it declares 18)" in result.message


def test_duplicated_columns_among_many_are_named(tmp_path, taxi_spec):
    names = HEADER.split(",")
    header = ",".join(names + names[:3])
    result, _ = run_file(tmp_path, (header + "\n" + ",".join(["1"] * 21) + "\n").encode(), taxi_spec)
    assert result.reason == "duplicated_columns"
    assert "duplicated column(s): fare, pickup_community_area, trip_start_month" in result.message


def test_the_limits_are_spec_settings_with_checked_values(taxi_spec):
    assert (taxi_spec.max_line_bytes, taxi_spec.max_columns) == (specs.MAX_LINE_BYTES, specs.MAX_COLUMNS)
    for key in ("max_line_bytes", "max_columns", "max_file_bytes"):
        with pytest.raises(specs.SpecError, match=key):
            specs.from_dict({**taxi_spec.raw, key: 0})
