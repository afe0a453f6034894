"""Seeded mutations of real inputs, for the fuzz tests (``tests/test_fuzz.py``) and ``make fuzz``.

Each generator yields (label, mutated bytes): the label says what was changed, so a finding can be reproduced
from the seed and the label alone.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from typing import Any, Iterator

import numpy as np

# ---------------------------------------------------------------- skops artifacts

_INT_PICKS = (-1, -2, 0, 1, 2**31 - 1, -(2**31), 2**32, 10**6)


def _mutate_int(value: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    picks = np.asarray([*(p for p in _INT_PICKS), n, n + 1, n - 1, rng.integers(-2 * n - 2, 2 * n + 2)])
    out = value.copy()
    k = max(1, int(rng.integers(1, max(2, len(out) // 4 + 2))))
    where = rng.integers(0, len(out), k) if len(out) else np.asarray([], dtype=int)
    if len(where):
        if rng.random() < 0.3:   # a node pointing at itself or back at its parent: a cycle
            out[where] = np.clip(where - rng.integers(0, 2, len(where)), 0, None)
        else:
            info = np.iinfo(out.dtype)
            out[where] = np.clip(rng.choice(picks, len(where)), info.min, info.max)
    return out


def _mutate_float(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = value.astype(value.dtype, copy=True)
    if not out.size:
        return out
    flat = out.reshape(-1)
    where = rng.integers(0, flat.size, max(1, flat.size // 8))
    flat[where] = rng.choice(np.asarray([np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0, 1e-308]), len(where))
    return out


def mutate_array(array: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One change to an array: its values (indices, NaN, infinities), its shape, or its type."""
    choice = rng.integers(0, 10)
    if array.ndim == 0:
        return "a scalar as an array", np.repeat(array, int(rng.integers(0, 3)))
    if array.dtype.names and choice < 6:   # a structured array (tree nodes): one of its fields
        out = array.copy()
        name = array.dtype.names[int(rng.integers(0, len(array.dtype.names)))]
        field = out[name]
        if field.dtype.kind in "iu":
            out[name] = _mutate_int(field, rng, len(out))
        elif field.dtype.kind == "f":
            out[name] = _mutate_float(field, rng)
        return f"field {name}", out
    if choice < 5 and array.dtype.kind in "iu" and array.ndim == 1:
        return "int values", _mutate_int(array, rng, max(len(array), 2))
    if choice < 5 and array.dtype.kind == "f":
        return "float values", _mutate_float(array, rng)
    if choice < 7 and array.ndim >= 1 and len(array):   # shape: fewer or more rows
        if rng.random() < 0.5:
            return "truncated", array[: int(rng.integers(0, len(array)))]
        return "extended", np.concatenate([array, array[: int(rng.integers(1, len(array) + 1))]])
    if choice < 8 and array.size:
        if array.ndim >= 2:
            return "flattened", array.reshape(-1)
        return "as a column", array.reshape(-1, 1)
    if choice < 9 and not array.dtype.names:
        target = [np.float32, np.int32, np.int8, np.uint64, np.bool_, np.float64, np.int64][int(rng.integers(0, 7))]
        try:
            return f"as {np.dtype(target)}", array.astype(target)
        except (TypeError, ValueError):
            return "emptied", array[:0]
    return "emptied", array[:0]


def _json_nodes(node: Any, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def mutate_schema(schema: Any, files: list[str], rng: np.random.Generator) -> str:
    """One change to the skops schema, in place: a number, a key, an array's file, a node's type."""
    nodes = _json_nodes(schema, [])
    numbers = [n for n in nodes if n.get("__loader__") == "JsonNode" and n.get("is_json")]
    choice = rng.integers(0, 5)
    if choice < 2 and numbers:
        node = numbers[int(rng.integers(0, len(numbers)))]
        value = [-1, 0, 2**31, 10**9, -(10**9), 1.5, "nan", True, None, [1]][int(rng.integers(0, 10))]
        node["content"] = json.dumps(value)
        return f"json value -> {value!r}"
    dicts = [n for n in nodes if n.get("__loader__") in ("DictNode", "ObjectNode") and isinstance(n.get("content"),
                                                                                                    dict)]
    if choice == 2 and dicts:
        node = dicts[int(rng.integers(0, len(dicts)))]
        content = node["content"].get("content", node["content"])
        if isinstance(content, dict) and content:
            key = list(content)[int(rng.integers(0, len(content)))]
            del content[key]
            return f"key {key} removed"
    arrays = [n for n in nodes if n.get("__loader__") == "NdArrayNode" and "file" in n]
    if choice == 3 and arrays and files:
        node = arrays[int(rng.integers(0, len(arrays)))]
        node["file"] = files[int(rng.integers(0, len(files)))]
        return "array swapped for another"
    if nodes:
        node = nodes[int(rng.integers(0, len(nodes)))]
        if "__loader__" in node:
            node["__loader__"] = ["JsonNode", "ListNode", "DictNode", "NdArrayNode"][int(rng.integers(0, 4))]
            return f"loader -> {node['__loader__']}"
    return "unchanged"


def mutate_artifact(blob: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """The skops file with one (sometimes two) of its arrays or its schema changed."""
    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        entries = {item.filename: source.read(item) for item in source.infolist()}
    arrays = [name for name in entries if name.endswith(".npy")]
    labels = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        if arrays and rng.random() < 0.75:
            name = arrays[int(rng.integers(0, len(arrays)))]
            array = np.load(io.BytesIO(entries[name]), allow_pickle=False)
            what, new = mutate_array(array, rng)
            buffer = io.BytesIO()
            np.save(buffer, new, allow_pickle=False)
            entries[name] = buffer.getvalue()
            labels.append(f"{what} of {array.dtype.names and 'nodes' or array.dtype}{list(array.shape)}")
        elif arrays and rng.random() < 0.3:
            name = arrays[int(rng.integers(0, len(arrays)))]
            data = bytearray(entries[name])
            for position in rng.integers(0, len(data), 4):
                data[position] = int(rng.integers(0, 256))
            entries[name] = bytes(data)
            labels.append("bytes flipped in an array")
        else:
            schema = json.loads(entries["schema.json"])
            labels.append(mutate_schema(schema, arrays, rng))
            entries["schema.json"] = json.dumps(schema).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in entries.items():
            target.writestr(name, data)
    return "; ".join(labels), out.getvalue()


# ---------------------------------------------------------------- data files

_ODD = ["$\\x$", "$5-$10", "٣٫١٤", "\u202eevil", "e\u0301", "😀", "NaN", "inf", "-inf", "1e999", "0x1F", "1,5",
        '"', '""', "\r", "\n", ",", ";", "\x00", "\ufeff", "NULL", "None", "true", "  42  ", "-0", "9" * 40]


def mutate_csv(text: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    lines = text.split(b"\n")
    choice = int(rng.integers(0, 12))
    if choice == 0:   # a cell replaced by an odd value
        i = int(rng.integers(1, max(2, len(lines))))
        cells = lines[min(i, len(lines) - 1)].split(b",")
        j = int(rng.integers(0, len(cells)))
        odd = _ODD[int(rng.integers(0, len(_ODD)))]
        cells[j] = odd.encode("utf-8")
        lines[min(i, len(lines) - 1)] = b",".join(cells)
        return f"cell -> {odd!r}", b"\n".join(lines)
    if choice == 1:
        data = bytearray(text)
        for position in rng.integers(0, len(data), int(rng.integers(1, 20))):
            data[position] = int(rng.integers(0, 256))
        return "bytes flipped", bytes(data)
    if choice == 2:
        return "truncated", text[: int(rng.integers(0, len(text)))]
    if choice == 3:   # the header changed
        header = lines[0].split(b",")
        j = int(rng.integers(0, len(header)))
        header[j] = [b"", b"$\\x$", header[j] * 2, header[0], "ünï".encode(), b"a" * 300][int(rng.integers(0, 6))]
        lines[0] = b",".join(header)
        return "header cell changed", b"\n".join(lines)
    if choice == 4:   # fields added or removed on some lines
        for i in rng.integers(1, max(2, len(lines)), 5):
            i = min(int(i), len(lines) - 1)
            lines[i] = lines[i] + b",extra" if rng.random() < 0.5 else lines[i].rsplit(b",", 1)[0]
        return "field counts changed", b"\n".join(lines)
    if choice == 5:   # an unbalanced quote
        i = min(int(rng.integers(1, max(2, len(lines)))), len(lines) - 1)
        lines[i] = b'"' + lines[i]
        return "open quote", b"\n".join(lines)
    if choice == 6:
        return "a long line", text + b"\n" + b"9" * int(rng.integers(1, 3 * 2**20))
    if choice == 7:
        return "BOM and CRLF", b"\xef\xbb\xbf" + text.replace(b"\n", b"\r\n")
    if choice == 8:
        return "semicolons", text.replace(b",", b";")
    if choice == 9:
        return "header only", lines[0] + b"\n"
    if choice == 10:
        return "many columns", b",".join(b"c%d" % i for i in range(int(rng.integers(100, 5000)))) + b"\n1\n"
    return "Latin-1", text.decode("utf-8", "replace").encode("latin-1", "replace")


def mutate_gzip(text: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    choice = int(rng.integers(0, 4))
    if choice == 0:
        label, inner = mutate_csv(text, rng)
        return f"gzip of {label}", gzip.compress(inner)
    packed = bytearray(gzip.compress(text))
    if choice == 1:
        for position in rng.integers(10, len(packed), 4):
            packed[position] = int(rng.integers(0, 256))
        return "gzip bytes flipped", bytes(packed)
    if choice == 2:
        return "gzip truncated", bytes(packed[: int(rng.integers(2, len(packed)))])
    return "gzip bomb", gzip.compress(text.split(b"\n")[0] + b"\n" + b"1," * (8 * 2**20))


def mutate_parquet(frame: Any, rng: np.random.Generator) -> tuple[str, bytes]:
    """A Parquet file of the frame with a column's type changed (nested, unsigned, dictionary, binary, ...), or
    with its bytes damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    choice = int(rng.integers(0, 9))
    j = int(rng.integers(0, table.num_columns))
    name = table.column_names[j]
    n = table.num_rows
    label = "plain"
    if choice == 0:
        table = table.set_column(j, name, pa.array([[1, 2]] * n, pa.list_(pa.int64())))
        label = f"{name} as list"
    elif choice == 1:
        table = table.set_column(j, name, pa.array([{"a": 1}] * n, pa.struct([("a", pa.int64())])))
        label = f"{name} as struct"
    elif choice == 2:
        table = table.set_column(j, name, pa.array([[("k", 1)]] * n, pa.map_(pa.string(), pa.int64())))
        label = f"{name} as map"
    elif choice == 3:
        table = table.set_column(j, name, pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()))
        label = f"{name} as uint64"
    elif choice == 4:
        table = table.set_column(j, name, pa.array([b"\xff\x00"] * n, pa.binary()))
        label = f"{name} as binary"
    elif choice == 5:   # a dictionary column that decodes to far more than the file holds
        big = "x" * int(rng.integers(10_000, 100_000))
        codes = pa.array(np.zeros(n, dtype=np.int32))
        table = table.set_column(j, name, pa.DictionaryArray.from_arrays(codes, pa.array([big])))
        label = f"{name} as one {len(big)}-byte string repeated"
    elif choice == 6:
        table = table.set_column(j, name, pa.array([None] * n, pa.null()))
        label = f"{name} as null"
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=max(1, int(rng.integers(1, max(2, n)))))
    data = buffer.getvalue()
    if choice == 7:
        damaged = bytearray(data)
        for position in rng.integers(4, max(5, len(damaged) - 4), 6):
            damaged[position] = int(rng.integers(0, 256))
        return "parquet bytes flipped", bytes(damaged)
    if choice == 8:
        return "parquet truncated", data[: int(rng.integers(4, len(data)))]
    return f"parquet: {label}", data


def data_cases(csv: bytes, frame: Any, count: int, seed: int) -> Iterator[tuple[str, str, bytes]]:
    """``count`` mutated files of one table: (label, format, bytes), CSV, gzip and Parquet in turn."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        kind = ("csv", "gzip", "parquet")[i % 3]
        if kind == "csv":
            label, data = mutate_csv(csv, rng)
        elif kind == "gzip":
            label, data = mutate_gzip(csv, rng)
        else:
            label, data = mutate_parquet(frame, rng)
        yield f"#{i} {kind}: {label}", kind, data
