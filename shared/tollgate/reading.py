"""Reading a dropped batch: CSV (UTF-8, with or without BOM), gzip-compressed CSV or Parquet, in chunks.

Memory stays bounded whatever the file size: CSV is read ``chunk_bytes`` at a time, cut at the last
line break (pyarrow's own default assumes no line breaks inside values, so this cut is safe) and
parsed with the spec's column types by pyarrow on all cores; Parquet is read row group by row group.
A hostile file cannot make the reader hold more: the spec's ``max_file_bytes`` caps the bytes a gzip
file decompresses to (and what a Parquet file decodes to, counted row by row before its values are built),
``max_line_bytes`` the longest line (or decoded Parquet row), and ``max_columns`` the header, each checked before
anything large is parsed; a Parquet column of a type Tollgate cannot read (lists, maps, structs, binary) is a
rejection with a reason.
A chunk whose values do not parse as the declared types is re-read as text, so the contract can
name the offending rows instead of failing the file. Every way a file can be unreadable raises
``BatchRejected`` with a stable ``reason`` and a message a person can act on.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import gzip
import io
import queue
import threading
import zlib
from typing import IO, Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from tollgate.spec import DatasetSpec

CHUNK_BYTES = 16 * 2**20
PARQUET_BATCH_ROWS = 65_536
_SNIFF = 64 * 1024
# how each spec type is parsed from CSV (datetimes as text, then read as ISO-8601 or Unix numbers by the contract)
_ARROW_TYPES = {"float": pa.float64(), "int": pa.int64(), "string": pa.string(), "bool": pa.bool_(),
                "datetime": pa.string()}
_BOM = codecs.BOM_UTF8


class BatchRejected(Exception):
    """The batch as a whole cannot be used; ``reason`` is a stable code, the message is for people."""

    def __init__(self, reason: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail


@dataclasses.dataclass
class MalformedRows:
    """CSV lines with the wrong number of fields: skipped, counted, a few kept as examples."""
    count: int = 0
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def handler(self, row: Any) -> str:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append({"line": row.number if row.number and row.number > 0 else None,
                                  "fields": row.actual_columns, "expected": row.expected_columns,
                                  "text": row.text[:200]})
        return "skip"


def sniff_format(head: bytes) -> str:
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return "csv"


def check_columns(columns: list[str], spec: DatasetSpec) -> None:
    """Reject a batch whose header lacks a required column, repeats one, or (with ``extra_columns: reject``, the
    default) carries one the spec does not declare."""
    if len(columns) > spec.max_columns:
        raise _too_many_columns(len(columns), spec)
    present = set(columns)
    missing = [c.name for c in spec.columns.values() if c.required and c.name not in present]
    unexpected = [c for c in columns if c not in spec.columns] if spec.extra_columns == "reject" else []
    duplicated = sorted(c for c, n in collections.Counter(columns).items() if n > 1)
    parts = []
    if missing:
        parts.append(f"missing required column(s): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected column(s): {', '.join(unexpected)}")
    if duplicated:
        parts.append(f"duplicated column(s): {', '.join(duplicated)}")
    if parts:
        reason = "missing_columns" if missing else "unexpected_columns" if unexpected else "duplicated_columns"
        hint = "; or set `extra_columns: ignore` in the spec to leave undeclared columns out" if unexpected else ""
        raise BatchRejected(reason, "; ".join(parts) + f" (spec {spec.name} declares: {', '.join(spec.columns)})"
                            + hint,
                            missing=missing, unexpected=unexpected)


def _too_many_columns(count: int, spec: DatasetSpec) -> BatchRejected:
    return BatchRejected("too_many_columns", f"the header has {count} columns, more than the {spec.max_columns} "
                                             f"the spec allows (max_columns; it declares {len(spec.columns)})")


def _too_long(length: int, spec: DatasetSpec) -> BatchRejected:
    return BatchRejected("line_too_long", f"a line is {'over ' if length > spec.max_line_bytes else ''}"
                                          f"{length} bytes long, more than the {spec.max_line_bytes} the spec "
                                          "allows (max_line_bytes); check that the file is the CSV you meant")


def _too_large(spec: DatasetSpec, what: str) -> BatchRejected:
    return BatchRejected(
        "file_too_large",
        f"the file {what} more than the {spec.max_file_bytes / 2**30:.2f} GiB the spec allows (max_file_bytes); "
        "split it into smaller batches or raise the limit in the dataset spec")


def longest_line(body: bytes | memoryview) -> int:
    """The length of the longest line in ``body`` (its line breaks found by numpy, not a Python loop)."""
    data = np.frombuffer(body, dtype=np.uint8)
    breaks = np.flatnonzero(data == 10)
    if not breaks.size:
        return len(data)
    edges = np.concatenate(([-1], breaks, [len(data)]))
    return int(np.max(np.diff(edges)) - 1)


def prefetch(chunks: Iterator[pd.DataFrame], depth: int = 1) -> Iterator[pd.DataFrame]:
    """Read the next chunk in a background thread while the caller works on this one (pyarrow and
    zlib release the GIL, so reading and validating overlap on two cores). At most ``depth`` chunks
    wait in the queue; an error in the reader is raised in the caller."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        box.put(("chunk", chunk), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            box.put(("error", exc))

    thread = threading.Thread(target=produce, name="tollgate-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def iter_chunks(fh: IO[bytes], spec: DatasetSpec, *, size: int | None = None, malformed: MalformedRows | None = None,
                chunk_bytes: int = CHUNK_BYTES) -> Iterator[pd.DataFrame]:
    """DataFrames of at most about ``chunk_bytes`` of input each, typed by the spec where values allow.

    ``fh`` is a binary, seekable file object (a local file or a Cloud Storage blob reader).
    """
    if size == 0:
        raise BatchRejected("empty_file", "the file is empty (0 bytes): nothing to validate")
    if size is not None and size > spec.max_file_bytes:
        raise _too_large(spec, f"is {size / 2**30:.2f} GiB,")
    head = fh.read(4)
    fh.seek(0)
    kind = sniff_format(head)
    if kind == "parquet":
        yield from _parquet_chunks(fh, spec, chunk_bytes)
        return
    stream: IO[bytes] = gzip.GzipFile(fileobj=fh, mode="rb") if kind == "gzip" else fh
    yield from _csv_chunks(stream, spec, malformed or MalformedRows(), chunk_bytes, compressed=kind == "gzip")


def _parquet_type(kind: pa.DataType, declared: str | None) -> pa.DataType | None:
    """What a Parquet column of type ``kind`` is read as for a spec column of type ``declared`` (None: it is
    not declared, and left out), or None when Tollgate cannot read it: nested, binary, interval and extension
    types become a rejection with a reason, never an exception."""
    import pyarrow.types as t

    if t.is_dictionary(kind):
        return _parquet_type(kind.value_type, declared)
    if t.is_null(kind) or t.is_boolean(kind) or t.is_string(kind) or t.is_floating(kind):
        return pa.float64() if t.is_float16(kind) else kind
    if t.is_large_string(kind):
        return pa.string()
    if t.is_integer(kind):   # uint64 beyond int64 must not overflow the int64 it would become: read as float
        return pa.float64() if t.is_uint64(kind) else kind
    if t.is_decimal(kind):
        return pa.float64()
    if t.is_timestamp(kind) or t.is_date(kind):   # Unix seconds for a number column, ISO text for any other
        return pa.float64() if declared in ("int", "float") else pa.string()
    if declared == "datetime" and (t.is_integer(kind) or t.is_floating(kind)):
        return pa.float64()
    if t.is_time(kind):
        return pa.string()
    return None


def _row_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """Each row's size once decoded: fixed widths, and string lengths read off dictionaries' entries and offsets
    without building a single decoded value."""
    import pyarrow.compute as pc

    sizes = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        kind = column.type
        if isinstance(column, pa.DictionaryArray):
            lengths = pc.binary_length(column.dictionary) if pa.types.is_string(kind.value_type) else None
            if lengths is not None:
                sizes += pc.fill_null(lengths.take(column.indices), 0).to_numpy(zero_copy_only=False) + 4
            else:
                sizes += max(kind.value_type.bit_width // 8, 1)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            sizes += pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False) + 4
        elif not pa.types.is_null(kind):
            sizes += max(getattr(kind, "bit_width", 64) // 8, 1)
    return sizes


def _decoded(batch: pa.RecordBatch, types: dict[str, pa.DataType]) -> pd.DataFrame:
    arrays = []
    for name, column in zip(batch.schema.names, batch.columns):
        if isinstance(column, pa.DictionaryArray):
            column = column.dictionary_decode()
        target = types[name]
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            if pa.types.is_floating(target):   # Unix seconds
                column = column.cast(pa.timestamp("s"), safe=False).cast(pa.int64()).cast(pa.float64())
            else:
                column = column.cast(pa.string())
        elif column.type != target:
            column = column.cast(target, safe=False)   # uint64 and decimals as floats: the contract checks them
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names).to_pandas()


def _parquet_chunks(fh: IO[bytes], spec: DatasetSpec, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pd.DataFrame]:
    """Parquet, batch by batch, bounded by what it decodes to: string columns stay dictionary-encoded until each
    row's decoded size is known, rows are cut into chunks of about ``chunk_bytes``, and the file is refused as
    soon as its decoded total passes ``max_file_bytes`` (its metadata's sizes are measured after dictionary
    encoding: 13 KB can declare 12 KB and decode to 97 MiB)."""
    try:
        parquet = pq.ParquetFile(fh)
        schema = parquet.schema_arrow
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise BatchRejected("unreadable_parquet", f"the file looks like Parquet but cannot be read: {exc}") from exc
    if parquet.metadata.num_columns > spec.max_columns:
        raise _too_many_columns(parquet.metadata.num_columns, spec)
    check_columns(schema.names, spec)
    uncompressed = sum(parquet.metadata.row_group(i).total_byte_size for i in range(parquet.metadata.num_row_groups))
    if uncompressed > spec.max_file_bytes:
        raise _too_large(spec, f"holds {uncompressed / 2**30:.2f} GiB once uncompressed,")
    if parquet.metadata.num_rows == 0:
        raise BatchRejected("no_rows", "the Parquet file has a schema but no rows")
    types: dict[str, pa.DataType] = {}
    refused = []
    for field in schema:
        declared = spec.columns[field.name].type if field.name in spec.columns else None
        read_as = _parquet_type(field.type, declared)
        if read_as is None:
            refused.append(f"{field.name} ({field.type})")
        types[field.name] = read_as
    if refused:
        raise BatchRejected("unsupported_column_type",
                            f"column(s) of types Tollgate cannot validate: {', '.join(refused)[:500]}; a batch "
                            "holds numbers, text, booleans, dates and timestamps (write lists, maps, structs and "
                            "binary values as text columns)", columns=refused)
    strings = [f.name for f in schema if pa.types.is_string(types[f.name])]
    decoded = 0
    try:
        parquet = pq.ParquetFile(fh, read_dictionary=strings)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            sizes = _row_bytes(batch)
            if len(sizes) and int(sizes.max()) > spec.max_line_bytes:
                raise BatchRejected("line_too_long", f"a row decodes to {int(sizes.max())} bytes, more than the "
                                                     f"{spec.max_line_bytes} the spec allows (max_line_bytes)")
            decoded += int(sizes.sum())
            if decoded > spec.max_file_bytes:
                raise _too_large(spec, "decodes to")
            ends = np.cumsum(sizes)
            start = 0
            while start < batch.num_rows:   # rows cut by their decoded bytes, not by their count
                stop = int(np.searchsorted(ends, ends[start] - sizes[start] + chunk_bytes, side="right"))
                stop = max(stop, start + 1)
                yield _decoded(batch.slice(start, stop - start), types)
                start = stop
    except (OSError, pa.ArrowException) as exc:
        raise BatchRejected("unreadable_parquet", f"the Parquet file is damaged: {exc}") from exc


def _read(stream: IO[bytes], n: int, compressed: bool) -> bytes:
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        if compressed:
            raise BatchRejected("corrupt_gzip",
                                f"the file is gzip-compressed but cannot be decompressed: {exc}") from exc
        raise


def _sniff_text(block: bytes) -> None:
    sample = block[:_SNIFF]
    if b"\x00" in sample:
        raise BatchRejected("not_a_table", "the file is binary, not CSV, gzip-compressed CSV or Parquet")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError as exc:
        raise _bad_encoding(f"byte {exc.start}: {sample[exc.start:exc.start + 1]!r}") from exc


def _bad_encoding(where: str) -> BatchRejected:
    return BatchRejected("bad_encoding", f"the file is not UTF-8 ({where}); re-save it as UTF-8 "
                                         "(e.g. `iconv -f LATIN1 -t UTF-8`) and drop it again")


def _header(block: bytes, spec: DatasetSpec) -> tuple[bytes, list[str]]:
    end = block.find(b"\n")
    line = block if end < 0 else block[: end + 1]
    if len(line) > spec.max_line_bytes:
        raise _too_long(len(line), spec)
    if line.count(b",") + 1 > spec.max_columns:   # before pyarrow parses a million names
        raise _too_many_columns(line.count(b",") + 1, spec)
    try:
        names = pcsv.read_csv(io.BytesIO(line + b"\n"), read_options=pcsv.ReadOptions(autogenerate_column_names=False),
                              convert_options=pcsv.ConvertOptions(column_types={})).schema.names
    except pa.ArrowInvalid as exc:
        raise BatchRejected("malformed_csv", f"the header line cannot be parsed: {exc}") from exc
    if len(names) == 1 and names[0] not in spec.columns:
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if delimiter in names[0]:
                raise BatchRejected("wrong_delimiter",
                                    f"the header is split by {label}, not commas; save the file as comma-separated CSV")
    check_columns(names, spec)
    return (line if line.endswith(b"\n") else line + b"\n"), names


def _parse(body: memoryview, names: list[str], spec: DatasetSpec, malformed: MalformedRows,
           typed: bool) -> pa.Table:
    types = {n: _ARROW_TYPES[spec.columns[n].type] if typed and n in spec.columns else pa.string() for n in names}
    return pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(body)),
        read_options=pcsv.ReadOptions(column_names=names),
        parse_options=pcsv.ParseOptions(invalid_row_handler=malformed.handler),
        convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                            true_values=["true", "True", "TRUE", "1"],
                                            false_values=["false", "False", "FALSE", "0"]))


def _chunk(body: memoryview, names: list[str], spec: DatasetSpec, malformed: MalformedRows) -> pd.DataFrame:
    seen = MalformedRows()      # counted only from the parse that succeeds
    try:
        table = _parse(body, names, spec, seen, typed=True)
    except pa.ArrowInvalid as exc:
        text = str(exc)
        if "UTF8" in text or "UTF-8" in text:
            raise _bad_encoding("invalid UTF-8 bytes inside the data") from exc
        if "conversion error" not in text:
            raise BatchRejected("malformed_csv", f"the CSV cannot be parsed: {text}") from exc
        # values that are not of the declared type: read as text so the contract names each row
        seen = MalformedRows()
        table = _parse(body, names, spec, seen, typed=False)
    malformed.count += seen.count
    malformed.examples.extend(seen.examples[: 5 - len(malformed.examples)])
    return table.to_pandas()


def _csv_chunks(stream: IO[bytes], spec: DatasetSpec, malformed: MalformedRows, chunk_bytes: int,
                compressed: bool) -> Iterator[pd.DataFrame]:
    block = _read(stream, chunk_bytes, compressed)
    total = len(block)
    if compressed and total > spec.max_file_bytes:
        raise _too_large(spec, "decompresses to")
    if block.startswith(_BOM):
        block = block[len(_BOM):]
    if not block.strip():
        raise BatchRejected("empty_file", "the file has no content (only whitespace)")
    _sniff_text(block)
    header, names = _header(block, spec)   # data chunks are parsed with these names, without the header
    pending = block[len(header):] if block.startswith(header) else block[len(header) - 1:]
    rows = 0
    eof = False
    while not eof:
        if len(pending) > spec.max_line_bytes and pending.find(b"\n", 0, spec.max_line_bytes + 1) < 0:
            raise _too_long(len(pending), spec)   # before reading on: a line is already longer than allowed
        more = _read(stream, chunk_bytes, compressed)
        total += len(more)
        if compressed and total > spec.max_file_bytes:
            raise _too_large(spec, "decompresses to")
        eof = not more
        pending += more
        cut = len(pending) if eof else pending.rfind(b"\n") + 1
        if cut == 0:        # no line break yet: read on (the check above bounds how far)
            continue
        body, pending = memoryview(pending)[:cut], pending[cut:]
        if len(body) > spec.max_line_bytes and (longest := longest_line(body)) > spec.max_line_bytes:
            raise _too_long(longest, spec)
        frame = _chunk(body, names, spec, malformed)
        rows += len(frame)
        if len(frame):
            yield frame
    if rows == 0:
        if malformed.count:
            raise BatchRejected("malformed_csv", f"none of the {malformed.count} data line(s) has the header's "
                                                 f"{len(names)} fields; check the delimiter and quoting",
                                examples=malformed.examples)
        raise BatchRejected("no_rows", "the file has a header but no data rows")
