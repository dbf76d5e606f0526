"""Tests of core.readers on small logs written to tmp_path."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core.readers.assemble
import core.readers.blocks
import core.readers.labels
from core.readers import (
    InteractionLogError,
    LimitExceededError,
    ReadLimits,
    ReadOptions,
    ReadResult,
    parse_column_text,
    parse_timestamp_column_text,
    read_interactions,
)

COMPRESSORS = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read_text(tmp_path: Path, content: str | bytes, name: str = "log.txt", **options) -> ReadResult:
    limits = options.pop("limits", ReadLimits())
    return read_interactions(write(tmp_path, name, content), ReadOptions(**options), limits=limits)


def sequences(result: ReadResult) -> dict[str, list[str]]:
    """Map each user label to its item labels in sequence order."""
    dataset = result.dataset
    return {
        str(dataset.user_labels[user]): [
            str(dataset.item_labels[item - 1]) for item in dataset.sequence(user)
        ]
        for user in range(dataset.n_users)
    }


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class NonSeekableStream(io.RawIOBase):
    """A stream that can only be read forward, like an HTTP upload body."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# Formats


def test_tsv_without_header_sorts_by_timestamp(tmp_path):
    result = read_text(tmp_path, "1\t10\t5\t300\n2\t11\t3\t100\n1\t12\t4\t100\n2\t10\t1\t200\n")

    assert sequences(result) == {"1": ["12", "10"], "2": ["11", "10"]}
    assert result.detected == {
        "format": "delimited",
        "separator": "\t",
        "header": False,
        "user_column": 0,
        "item_column": 1,
        "timestamp_column": 3,
        "compression": "none",
    }
    assert result.rows_read == 4
    assert result.rows_dropped == 0
    assert len(result.warnings) == 1
    assert "column 3" in result.warnings[0]


def test_dataset_arrays_are_reindexed(tmp_path):
    result = read_text(tmp_path, "u9\tb\t2\nu7\ta\t1\nu9\ta\t3\n")
    dataset = result.dataset

    assert dataset.user_labels.tolist() == ["u9", "u7"]
    assert dataset.item_labels.tolist() == ["b", "a"]
    assert dataset.items.dtype == np.int64
    assert dataset.offsets.dtype == np.int64
    assert dataset.items.tolist() == [1, 2, 2]
    assert dataset.offsets.tolist() == [0, 2, 3]
    assert dataset.timestamps.tolist() == [2.0, 3.0, 1.0]


def test_csv_with_header_finds_named_columns(tmp_path):
    content = "rating,item_id,timestamp,user_id\n5,a,20,x\n3,b,10,x\n4,c,5,y\n"
    result = read_text(tmp_path, content, name="ratings.csv")

    assert sequences(result) == {"x": ["b", "a"], "y": ["c"]}
    assert result.detected["separator"] == ","
    assert result.detected["header"] is True
    assert result.detected["user_column"] == "user_id"
    assert result.detected["item_column"] == "item_id"
    assert result.detected["timestamp_column"] == "timestamp"
    assert result.warnings == []


def test_header_detected_from_numeric_columns(tmp_path):
    result = read_text(tmp_path, "who,what,when\n1,2,30\n1,3,20\n")

    assert result.detected["header"] is True
    assert result.detected["user_column"] == "who"
    assert result.detected["item_column"] == "what"
    assert result.detected["timestamp_column"] is None
    assert sequences(result) == {"1": ["2", "3"]}
    assert len(result.warnings) == 2


def test_double_colon_separator(tmp_path):
    result = read_text(
        tmp_path,
        "1::1193::5::978300760\n1::661::3::978302109\n2::914::3::978301968\n",
        name="ratings.dat",
    )

    assert result.detected["separator"] == "::"
    assert sequences(result) == {"1": ["1193", "661"], "2": ["914"]}


def test_semicolon_log_with_session_override(tmp_path):
    content = (
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n"
        "1;NA;31331;1031018;2016-05-09\n"
        "1;NA;32118;243569;2016-05-09\n"
        "2;7;9654;75848;2016-05-09\n"
    )
    detected = read_text(tmp_path, content)
    overridden = read_text(
        tmp_path, content, user_column="session_id", timestamp_column="timeframe"
    )

    assert detected.detected["user_column"] == "user_id"
    assert sequences(detected)["NA"] == ["32118", "81766", "31331"]
    assert overridden.detected["user_column"] == "session_id"
    assert sequences(overridden) == {"1": ["32118", "81766", "31331"], "2": ["9654"]}


def test_whitespace_separated_rows(tmp_path):
    result = read_text(tmp_path, "1   10  100\n  2\t11 50  \n1 12    90\n")

    assert result.detected["separator"] == "whitespace"
    assert result.detected["format"] == "delimited"
    assert sequences(result) == {"1": ["12", "10"], "2": ["11"]}


def test_recbole_inter_file(tmp_path):
    content = (
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n3\t7\t1\t20\n3\t8\t1\t10\n"
    )
    result = read_text(tmp_path, content, name="ml.data")

    assert result.detected["format"] == "inter"
    assert result.detected["user_column"] == "user_id:token"
    assert result.detected["timestamp_column"] == "timestamp:float"
    assert sequences(result) == {"3": ["8", "7"]}


def test_inter_detected_from_file_name(tmp_path):
    result = read_text(tmp_path, "user_id\titem_id\n1\t2\n1\t3\n", name="log.inter")

    assert result.detected["format"] == "inter"
    assert sequences(result) == {"1": ["2", "3"]}


def test_sasrec_lines_keep_file_order(tmp_path):
    result = read_text(tmp_path, "1 5\n2 6\n1 4\n1 5\n")

    assert result.detected["format"] == "sasrec"
    assert result.detected["timestamp_column"] is None
    assert sequences(result) == {"1": ["5", "4", "5"], "2": ["6"]}


def test_sequence_lines_append_repeated_user(tmp_path):
    result = read_text(tmp_path, "a 1 2 3\nb 4\n\na 5  6\n")

    assert result.detected["format"] == "sequence-lines"
    assert result.detected["separator"] == "whitespace"
    assert result.rows_read == 3
    assert sequences(result) == {"a": ["1", "2", "3", "5", "6"], "b": ["4"]}


def test_sequence_lines_with_header(tmp_path):
    result = read_text(tmp_path, "user_id items\nu 1 2 3\nv 2 3\n", format="sequence-lines")

    assert result.detected["header"] is True
    assert sequences(result) == {"u": ["1", "2", "3"], "v": ["2", "3"]}


def test_item_list_column_quoted_csv(tmp_path):
    content = 'user_id,item_id_list\nu1,"3, 4,5"\nu2,"4"\nu1,"6"\n'
    result = read_text(tmp_path, content)

    assert result.detected["format"] == "item-list-column"
    assert result.detected["item_column"] == "item_id_list"
    assert sequences(result) == {"u1": ["3", "4", "5", "6"], "u2": ["4"]}


def test_title_with_comma_stays_delimited(tmp_path):
    content = 'user_id,item_id\n1,"Toy Story, The"\n2,Heat\n'
    result = read_text(tmp_path, content)

    assert result.detected["format"] == "delimited"
    assert sequences(result) == {"1": ["Toy Story, The"], "2": ["Heat"]}


def test_item_list_column_in_tsv(tmp_path):
    result = read_text(tmp_path, "1\t10,11,12\n2\t13\n")

    assert result.detected["format"] == "item-list-column"
    assert sequences(result) == {"1": ["10", "11", "12"], "2": ["13"]}


def test_parquet_with_integer_ids_and_timestamps(tmp_path):
    table = pa.table(
        {
            "user_id": [5, 6, 5],
            "item_id": [100, 101, 102],
            "timestamp": pa.array([3000, 1000, 2000], pa.timestamp("ms")),
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")
    result = read_interactions(tmp_path / "log.parquet")

    assert result.detected["format"] == "parquet"
    assert result.detected["timestamp_column"] == "timestamp"
    assert sequences(result) == {"5": ["102", "100"], "6": ["101"]}
    assert result.dataset.timestamps.tolist() == [2.0, 3.0, 1.0]


def test_parquet_list_column_from_stream(tmp_path):
    table = pa.table({"session": ["s1", "s2"], "items": [["a", "b"], ["c"]]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    result = read_interactions(NonSeekableStream(buffer.getvalue()))

    assert result.detected["format"] == "parquet"
    assert sequences(result) == {"s1": ["a", "b"], "s2": ["c"]}


def test_gzip_compressed_parquet(tmp_path):
    buffer = io.BytesIO()
    pq.write_table(pa.table({"u": ["x", "x"], "i": ["1", "2"]}), buffer)
    path = write(tmp_path, "log.parquet.gz", gzip.compress(buffer.getvalue()))
    result = read_interactions(path, ReadOptions(user_column="u", item_column="i"))

    assert result.detected["compression"] == "gzip"
    assert result.detected["format"] == "parquet"
    assert sequences(result) == {"x": ["1", "2"]}


def test_parquet_progress_ends_at_file_size(tmp_path):
    path = tmp_path / "log.parquet"
    table = pa.table({"user_id": [1, 2] * 500, "item_id": list(range(1000))})
    pq.write_table(table, path, row_group_size=100)
    reported: list[int] = []
    read_interactions(path, on_progress=reported.append)

    assert len(reported) > 2
    assert reported == sorted(reported)
    assert reported[-1] == path.stat().st_size


def test_parquet_columns_by_position(tmp_path):
    table = pa.table({"a": ["x", "y"], "b": [1.5, 0.5], "c": ["u", "u"]})
    pq.write_table(table, tmp_path / "log.parquet")
    result = read_interactions(
        tmp_path / "log.parquet", ReadOptions(user_column=2, item_column=0, timestamp_column=1)
    )

    assert result.detected["user_column"] == "c"
    assert sequences(result) == {"u": ["y", "x"]}


def test_parquet_float_ids_raise(tmp_path):
    pq.write_table(pa.table({"user_id": [1.0], "item_id": [2]}), tmp_path / "log.parquet")

    with pytest.raises(InteractionLogError, match="ids must be integers or strings"):
        read_interactions(tmp_path / "log.parquet")


def test_parquet_null_item_raises_with_row(tmp_path):
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [3, None]}), tmp_path / "log.parquet")

    with pytest.raises(InteractionLogError) as caught:
        read_interactions(tmp_path / "log.parquet")

    assert caught.value.column == "item_id"
    assert "row 2" in str(caught.value)


# Ids and order


def test_ids_keep_labels_as_written(tmp_path):
    result = read_text(tmp_path, "007 1\n7 01\n7 1\n")

    assert result.dataset.user_labels.tolist() == ["007", "7"]
    assert result.dataset.item_labels.tolist() == ["1", "01"]
    assert sequences(result) == {"007": ["1"], "7": ["01", "1"]}


def test_integer_and_string_ids_share_numbering(tmp_path, small_blocks):
    rows = [("7", "1"), ("8", "2"), ("7", "3")] * 10 + [
        ("007", "x"),
        ("7", "1"),
        ("-1", "99999999999"),
    ]
    result = read_text(
        tmp_path, "".join(f"{user}\t{item}\n" for user, item in rows), name="log.tsv"
    )

    assert result.dataset.user_labels.tolist() == ["7", "8", "007", "-1"]
    assert result.dataset.item_labels.tolist() == ["1", "2", "3", "x", "99999999999"]
    assert sequences(result)["7"] == ["1", "3"] * 10 + ["1"]
    assert sequences(result)["007"] == ["x"]


def test_timestamp_ties_keep_file_order(tmp_path):
    content = "u\ta\t5\nv\tb\t1\nu\tc\t5\nu\td\t1\nu\te\t5\nv\tf\t1\n"
    result = read_text(tmp_path, content)

    assert sequences(result) == {"u": ["d", "a", "c", "e"], "v": ["b", "f"]}


def test_non_contiguous_user_is_one_sequence(tmp_path):
    result = read_text(tmp_path, "1\t1\t1\n2\t2\t2\n1\t3\t3\n2\t4\t4\n1\t5\t5\n")

    assert result.dataset.n_users == 2
    assert sequences(result) == {"1": ["1", "3", "5"], "2": ["2", "4"]}


def test_timestamp_column_false_keeps_file_order(tmp_path):
    result = read_text(tmp_path, "1\t1\t9\n1\t2\t3\n", timestamp_column=False)

    assert result.detected["timestamp_column"] is None
    assert result.dataset.timestamps is None
    assert sequences(result) == {"1": ["1", "2"]}


@pytest.mark.parametrize(
    ("text", "column"),
    [(None, None), ("3", 3), ("ts", "ts"), ("none", False), ("NONE", False), ("nonexistent", "nonexistent")],
)
def test_timestamp_column_text_is_parsed(text, column):
    assert parse_timestamp_column_text(text) == column
    assert type(parse_timestamp_column_text(text)) is type(column)


def test_column_text_none_is_a_name():
    assert parse_column_text("none") == "none"


def test_columns_by_position(tmp_path):
    result = read_text(
        tmp_path, "x,1,u,30\ny,2,u,10\n", user_column=2, item_column=0, timestamp_column=3
    )

    assert sequences(result) == {"u": ["y", "x"]}


def test_explicit_separator_and_format(tmp_path):
    result = read_text(tmp_path, "1|2|3\n1|4\n", format="sequence-lines", separator="|")

    assert sequences(result) == {"1": ["2", "3", "4"]}


def test_explicit_header_false_reads_first_line(tmp_path):
    result = read_text(tmp_path, "user_id,item_id\n1,2\n", header=False)

    assert sequences(result) == {"user_id": ["item_id"], "1": ["2"]}


def test_crlf_line_endings_and_byte_order_mark(tmp_path):
    result = read_text(tmp_path, b"\xef\xbb\xbfuser_id,item_id\r\n1,2\r\n\r\n1,3\r\n")

    assert result.detected["user_column"] == "user_id"
    assert sequences(result) == {"1": ["2", "3"]}


def test_ids_are_trimmed(tmp_path):
    result = read_text(tmp_path, "user_id, item_id\n1, 2\n1 ,3\n")

    assert sequences(result) == {"1": ["2", "3"]}


def test_last_line_without_line_break(tmp_path):
    result = read_text(tmp_path, "1\t2\t3\n1\t4\t5")

    assert sequences(result) == {"1": ["2", "4"]}


def test_stream_source_uses_filename_argument(tmp_path):
    stream = io.BytesIO(b"user_id\titem_id\n1\t2\n")
    result = read_interactions(stream, filename="log.inter")

    assert result.detected["format"] == "inter"


# Compression


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_compressed_text(tmp_path, compression):
    data = COMPRESSORS[compression](b"1\t2\t3\n1\t4\t2\n")
    result = read_text(tmp_path, data, name="log")

    assert result.detected["compression"] == compression
    assert sequences(result) == {"1": ["4", "2"]}


def test_zip_with_one_member_uses_its_name(tmp_path):
    data = zip_bytes({"folder/": b"", "log.inter": b"user_id\titem_id\n1\t2\n"})
    result = read_text(tmp_path, data, name="upload.zip")

    assert result.detected["compression"] == "zip"
    assert result.detected["format"] == "inter"


def test_zip_from_non_seekable_stream():
    data = zip_bytes({"log.tsv": b"1\t2\n1\t3\n"})
    result = read_interactions(NonSeekableStream(data))

    assert sequences(result) == {"1": ["2", "3"]}


def test_stream_read_from_its_current_position():
    for data in (b"1\t2\n1\t3\n", zip_bytes({"log.tsv": b"1\t2\n1\t3\n"})):
        stream = io.BytesIO(b"prefix" + data)
        stream.seek(len(b"prefix"))
        result = read_interactions(stream)

        assert sequences(result) == {"1": ["2", "3"]}


def test_progress_ends_at_compressed_size(tmp_path):
    path = write(tmp_path, "log.tsv.gz", gzip.compress(b"1\t2\n" * 1000))
    reported: list[int] = []
    read_interactions(path, on_progress=reported.append)

    assert reported[-1] == path.stat().st_size


def test_explicit_compression_none_reads_raw_bytes(tmp_path):
    with pytest.raises(InteractionLogError, match="NUL|UTF-8"):
        read_text(tmp_path, gzip.compress(b"1\t2\n"), compression="none")


# Errors


def test_empty_file_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="empty"):
        read_text(tmp_path, "")


def test_blank_lines_only_raise_empty(tmp_path):
    with pytest.raises(InteractionLogError, match="empty"):
        read_text(tmp_path, "\n  \n\r\n")


def test_header_only_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="header line but no data rows"):
        read_text(tmp_path, "user_id,item_id,timestamp\n")


def test_empty_item_raises_with_location(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "user_id,item_id\n1,2\n\n1,\n")

    assert caught.value.line == 4
    assert caught.value.column == "item_id"
    assert caught.value.value == ""
    assert "line 4" in str(caught.value)
    assert "empty item id" in str(caught.value)


def test_empty_user_raises_with_location(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "1\t2\n \t3\n")

    assert caught.value.line == 2
    assert caught.value.column == 0
    assert "empty user id" in caught.value.reason


def test_drop_invalid_counts_dropped_rows(tmp_path):
    result = read_text(tmp_path, "user_id,item_id\n1,2\n,3\n1,\n2,4\n", drop_invalid=True)

    assert sequences(result) == {"1": ["2"], "2": ["4"]}
    assert result.rows_read == 4
    assert result.rows_dropped == 2
    assert any("dropped 2 rows" in warning and "line 3" in warning for warning in result.warnings)


def test_drop_invalid_in_sequence_lines_drops_line(tmp_path):
    result = read_text(
        tmp_path,
        "a\t1\t2\nb\t\t3\nc\t4\n",
        format="sequence-lines",
        separator="\t",
        drop_invalid=True,
    )

    assert sequences(result) == {"a": ["1", "2"], "c": ["4"]}
    assert result.rows_dropped == 1


def test_all_rows_dropped_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="no interactions left"):
        read_text(tmp_path, "user_id,item_id\n,1\n2,\n", drop_invalid=True)


def test_ragged_row_raises_with_line(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "1,2,3\n\n4,5,6\n7,8\n", name="log.csv")

    assert caught.value.line == 4
    assert caught.value.value == "7,8"
    assert "expected 3 fields" in caught.value.reason


def test_sasrec_line_with_three_fields_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "1 2\n1 3\n1 4 5\n", format="sasrec")

    assert caught.value.line == 3
    assert "expected 2 fields" in caught.value.reason


def test_non_numeric_timestamp_raises_with_location(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "user_id\titem_id\ttimestamp\n1\t2\t10\n1\t3\tyesterday\n")

    assert caught.value.line == 3
    assert caught.value.column == "timestamp"
    assert caught.value.value == "yesterday"


def test_missing_timestamp_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "user_id,item_id,timestamp\n1,2,10\n1,3,\n")

    assert caught.value.line == 3
    assert caught.value.reason == "missing timestamp"


def test_infinite_timestamp_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "user_id,item_id,timestamp\n1,2,inf\n")

    assert caught.value.line == 2
    assert caught.value.value == "inf"


def test_invalid_utf8_raises_with_line(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, b"1\t2\n1\t\xe9t\xe9\n")

    assert caught.value.line == 2
    assert "not valid UTF-8" in caught.value.reason
    assert "0xe9" in caught.value.reason


def test_utf16_text_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="UTF-16"):
        read_text(tmp_path, "1\t2\n".encode("utf-16"))


def test_binary_data_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="binary data"):
        read_text(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_corrupt_gzip_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="corrupt or truncated gzip"):
        read_text(tmp_path, b"\x1f\x8b\x08\x00" + b"garbage" * 10)


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_truncated_archive_raises(tmp_path, compression):
    rows = "".join(f"{index}\t{index * 7 % 13}\n" for index in range(5000)).encode()
    data = COMPRESSORS[compression](rows)

    with pytest.raises(InteractionLogError, match=f"corrupt or truncated {compression}"):
        read_text(tmp_path, data[: len(data) // 2])


def test_zip_with_two_members_raises(tmp_path):
    data = zip_bytes({"a.tsv": b"1\t2\n", "b.tsv": b"1\t3\n"})

    with pytest.raises(InteractionLogError, match="exactly one file, but this one contains 2"):
        read_text(tmp_path, data)


def test_empty_zip_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="contains 0"):
        read_text(tmp_path, zip_bytes({}))


def test_zstandard_input_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="Zstandard"):
        read_text(tmp_path, b"\x28\xb5\x2f\xfd" + b"\x00" * 20)


def test_unknown_format_name_raises():
    with pytest.raises(InteractionLogError, match="unknown format 'json'"):
        ReadOptions(format="json")


def test_unknown_compression_raises():
    with pytest.raises(InteractionLogError, match="unknown compression"):
        ReadOptions(compression="zstd")


def test_invalid_separator_raises():
    with pytest.raises(InteractionLogError, match="invalid separator"):
        ReadOptions(separator="ab")


def test_missing_named_column_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "user_id,item_id\n1,2\n", user_column="customer")

    assert caught.value.column == "customer"
    assert "not found" in caught.value.reason


def test_named_column_without_header_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="no header"):
        read_text(tmp_path, "1,2\n3,4\n", user_column="user_id")


def test_position_out_of_range_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="out of range"):
        read_text(tmp_path, "1,2\n3,4\n", item_column=5)


def test_sequence_line_without_items_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "a 1 2\nb\nc 3\n", format="sequence-lines")

    assert caught.value.line == 2
    assert "no items" in caught.value.reason


def test_item_list_with_empty_entry_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, 'user_id,item_ids\nu,"1,2"\nv,"3,,4"\n')

    assert caught.value.line == 3
    assert caught.value.column == "item_ids"


def test_bare_carriage_return_raises(tmp_path):
    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "1\t2\r\n1\t3\r4\n")

    assert caught.value.line == 2
    assert "carriage return" in caught.value.reason


def test_undetectable_separator_raises(tmp_path):
    with pytest.raises(InteractionLogError, match="cannot detect the separator"):
        read_text(tmp_path, "justone\nfield\n")


# Blocks: the same results when a log spans many blocks


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(core.readers.blocks, "BLOCK_BYTES", 64)
    monkeypatch.setattr(core.readers.labels, "MERGE_MIN_LABELS", 3)


def test_error_line_in_later_block(tmp_path, small_blocks):
    rows = [f"{index}\t{index}\t{index}" for index in range(1, 100)]
    rows[80] = "81\t81\tlate"

    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "\n".join(rows) + "\n")

    assert caught.value.line == 81
    assert caught.value.value == "late"


def test_sequence_error_line_in_later_block(tmp_path, small_blocks):
    lines = [f"u{index}\t1\t2\t3" for index in range(1, 60)]
    lines[40] = "u41\t\t5"

    with pytest.raises(InteractionLogError) as caught:
        read_text(tmp_path, "\n".join(lines) + "\n", format="sequence-lines", separator="\t")

    assert caught.value.line == 41


def oracle_sequences(rows: list[tuple[str, str, int]]) -> dict[str, list[str]]:
    """Plain-Python reference: per user, items sorted by timestamp with ties in file order."""
    by_user: dict[str, list[tuple[int, int, str]]] = {}
    for position, (user, item, timestamp) in enumerate(rows):
        by_user.setdefault(user, []).append((timestamp, position, item))
    return {user: [item for _, _, item in sorted(events)] for user, events in by_user.items()}


def first_appearance(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


log_rows = st.lists(
    st.tuples(
        st.sampled_from(["1", "2", "10", "u", "007", "7"]),
        st.sampled_from(["a", "b", "c", "1", "01", "42"]),
        st.integers(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=log_rows)
def test_many_blocks_match_oracle(tmp_path, small_blocks, rows):
    content = "".join(f"{user}\t{item}\t{timestamp}\n" for user, item, timestamp in rows)
    result = read_text(tmp_path, content, name="log.tsv", header=False, timestamp_column=2)

    assert sequences(result) == oracle_sequences(rows)
    assert result.dataset.user_labels.tolist() == first_appearance([row[0] for row in rows])
    assert result.dataset.item_labels.tolist() == first_appearance([row[1] for row in rows])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "17"]),
            st.lists(st.sampled_from(["x", "y", "5"]), min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_sequence_lines_match_oracle(tmp_path, small_blocks, lines):
    content = "".join(f"{user} {' '.join(items)}\n" for user, items in lines)
    result = read_text(tmp_path, content, name="seq.txt", format="sequence-lines")

    expected: dict[str, list[str]] = {}
    for user, items in lines:
        expected.setdefault(user, []).extend(items)
    assert sequences(result) == expected


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.text(alphabet='12ab \t,;:"\n\r', max_size=80))
def test_arbitrary_text_reads_or_raises_log_error(tmp_path, content):
    try:
        result = read_text(tmp_path, content)
    except InteractionLogError:
        return
    assert result.dataset.n_interactions > 0


@settings(max_examples=200, deadline=None)
@given(
    users=st.lists(st.integers(min_value=0, max_value=3), max_size=25),
    timestamps=st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=25, max_size=25)),
    presort=st.booleans(),
)
def test_order_interactions_matches_sort(users, timestamps, presort):
    user_codes = np.array(sorted(users) if presort else users, dtype=np.int32)
    times = None if timestamps is None else np.array(timestamps[: len(users)], dtype=np.float64)
    original = core.readers.assemble.CHECK_CHUNK_ROWS
    core.readers.assemble.CHECK_CHUNK_ROWS = 3
    try:
        order = core.readers.assemble.order_interactions(user_codes, times)
    finally:
        core.readers.assemble.CHECK_CHUNK_ROWS = original

    expected = sorted(
        range(len(user_codes)),
        key=lambda row: (user_codes[row], 0 if times is None else times[row], row),
    )
    actual = list(range(len(user_codes))) if order is None else order.tolist()
    assert actual == expected


# Limits and progress


def test_max_interactions_limit(tmp_path):
    with pytest.raises(LimitExceededError) as caught:
        read_text(tmp_path, "1\t2\n1\t3\n1\t4\n", limits=ReadLimits(max_interactions=2))

    assert caught.value.limit == "max_interactions"
    assert caught.value.maximum == 2
    assert "max_interactions=2" in str(caught.value)


def test_max_users_and_items_limits(tmp_path):
    content = "1\t2\n3\t4\n5\t2\n"

    with pytest.raises(LimitExceededError) as users:
        read_text(tmp_path, content, limits=ReadLimits(max_users=2))
    with pytest.raises(LimitExceededError) as items:
        read_text(tmp_path, content, limits=ReadLimits(max_items=1))

    assert users.value.limit == "max_users"
    assert items.value.limit == "max_items"
    assert (
        read_text(tmp_path, content, limits=ReadLimits(max_users=3, max_items=2)).dataset.n_users
        == 3
    )


def test_max_users_limit_across_blocks(tmp_path, small_blocks):
    content = "".join(f"user{index}\titem\n" for index in range(200))

    with pytest.raises(LimitExceededError, match="max_users=50"):
        read_text(tmp_path, content, limits=ReadLimits(max_users=50))


def test_max_line_bytes_limit(tmp_path):
    with pytest.raises(LimitExceededError) as caught:
        read_text(tmp_path, "1 2\n1 " + "3 " * 100 + "\n", limits=ReadLimits(max_line_bytes=50))

    assert caught.value.limit == "max_line_bytes"
    assert "line 2" in str(caught.value)


def test_max_line_bytes_limit_without_line_break(tmp_path):
    with pytest.raises(LimitExceededError, match="max_line_bytes"):
        read_text(tmp_path, "1 " * (3 << 20), limits=ReadLimits(max_line_bytes=1000))


def test_max_decompressed_bytes_on_plain_text(tmp_path):
    content = "1\t2\n" * 1000

    with pytest.raises(LimitExceededError, match="max_decompressed_bytes"):
        read_text(tmp_path, content, limits=ReadLimits(max_decompressed_bytes=1000))


def test_max_decompressed_bytes_on_zip_member(tmp_path):
    data = zip_bytes({"log.tsv": b"1\t2\n" * 10_000})

    with pytest.raises(LimitExceededError, match="declares 40000 bytes"):
        read_text(tmp_path, data, limits=ReadLimits(max_decompressed_bytes=1000))


class ReadCountingStream(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)


def gzip_bomb(decompressed_mib: int) -> bytes:
    """Return gzip data of about 1 KiB per MiB of valid rows: one member repeated."""
    member = gzip.compress(b"1\t2\n" * (1 << 18), compresslevel=9)
    return member * decompressed_mib


def test_compression_ratio_stops_bomb_early():
    data = gzip_bomb(decompressed_mib=256)
    stream = ReadCountingStream(data)

    with pytest.raises(LimitExceededError) as caught:
        read_interactions(stream, limits=ReadLimits(max_compression_ratio=50))

    assert caught.value.limit == "max_compression_ratio"
    assert stream.bytes_read < len(data) / 10


def test_decompressed_size_stops_bomb_early():
    data = gzip_bomb(decompressed_mib=256)
    stream = ReadCountingStream(data)

    with pytest.raises(LimitExceededError, match="max_decompressed_bytes"):
        read_interactions(stream, limits=ReadLimits(max_decompressed_bytes=4 << 20))

    assert stream.bytes_read < len(data) / 10


def test_compressed_text_within_ratio_limit_reads(tmp_path):
    data = gzip.compress(b"1\t2\n" * 100)
    result = read_text(tmp_path, data, limits=ReadLimits(max_compression_ratio=2))

    assert result.dataset.n_interactions == 100


def test_invalid_limit_value_raises():
    with pytest.raises(ValueError, match="max_users"):
        ReadLimits(max_users=0)


def test_progress_reports_bytes_read(tmp_path, small_blocks):
    path = write(tmp_path, "log.tsv", "".join(f"{index}\t{index}\n" for index in range(100)))
    reported: list[int] = []
    read_interactions(path, on_progress=reported.append)

    assert len(reported) > 2
    assert reported == sorted(reported)
    assert reported[-1] == path.stat().st_size
