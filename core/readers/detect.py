"""Detection of a text log's layout (format, separator, header, columns) from its first lines.

Detection looks at up to 200 non-blank lines; each rule is overridden by the matching
ReadOptions field.
- format: "inter" when the file name ends in .inter or every header field is typed like
  `user_id:token`. "sequence-lines" when space-separated lines have different numbers of
  fields. "sasrec" for two space-separated fields without a header. "item-list-column" when
  the item column has a list name (ITEM_LIST_NAMES) or contains comma-separated ids.
  "delimited" otherwise.
- separator: the first of tab, "::", ";", ",", a single space (only where no field is empty)
  and whitespace that splits every sampled line into the same number (at least 2) of fields.
  Failing that, the first of tab, "::", ";" and "," that does so for most lines, so that the
  other lines are reported as rows with the wrong number of fields. Sequence lines are split
  at tabs when every line has one, else at whitespace.
- header: the first line contains a known column name (USER_NAMES, ITEM_NAMES, ITEM_LIST_NAMES,
  TIMESTAMP_NAMES). In the row formats a header is also assumed when a first-line value has
  a letter and is not a number, in a column that is numeric in every other sampled line.
- columns with a header: the first of USER_NAMES, ITEM_NAMES and TIMESTAMP_NAMES that the
  header contains, compared without case and without a RecBole type suffix. When no user or
  item name fits, column 0 or 1 is used with a warning, and without a timestamp name there is
  no timestamp. So for DIGINETICA (`session_id;user_id;item_id;timeframe;eventdate`)
  detection picks user_id, and a caller who wants sessions passes user_column="session_id".
- columns without a header: user 0, item 1, and the last column as timestamp when there are
  at least 3 columns and most of its sampled values are numbers (reported in the warnings).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath

from core.readers.errors import InteractionLogError
from core.readers.options import NO_TIMESTAMP_COLUMN, ReadOptions

USER_NAMES = (
    "user_id", "userid", "user", "uid", "reviewerid", "visitorid", "visitor_id",
    "customer_id", "customerid", "session_id", "sessionid", "session",
)  # fmt: skip
ITEM_NAMES = (
    "item_id", "itemid", "item", "iid", "movie_id", "movieid", "product_id", "productid",
    "asin", "track_id", "song_id", "business_id",
)  # fmt: skip
ITEM_LIST_NAMES = ("item_id_list", "item_ids", "items", "item_list", "item_sequence", "sequence")
TIMESTAMP_NAMES = ("timestamp", "time", "ts", "unixreviewtime", "unix_time", "timeframe")
KNOWN_NAMES = frozenset(USER_NAMES + ITEM_NAMES + ITEM_LIST_NAMES + TIMESTAMP_NAMES)

SEPARATOR_CANDIDATES = ("\t", "::", ";", ",", " ", "whitespace")
MAJORITY_CANDIDATES = ("\t", "::", ";", ",")
MAJORITY_SHARE = 0.5
RECBOLE_TYPED_NAME = re.compile(r"([^:\s]+):(token|token_seq|float|float_seq)")
# The decimal numbers that Arrow's float parser accepts, plus nan and inf.
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf)", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    """How to parse a text log; columns are 0-based positions into a row's fields.

    In "sequence-lines" the user is field 0 and every later field is an item, so n_fields is
    0 (any number) and item and timestamp are None.
    """

    format: str
    separator: str
    header: bool
    n_fields: int
    user: int
    item: int | None
    timestamp: int | None
    column_names: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = field(default=())

    def column_label(self, position: int | None) -> str | int | None:
        """Return the header name of a column, or its position when there is no header."""
        if position is None or self.column_names is None or position >= len(self.column_names):
            return position
        return self.column_names[position]

    def describe(self) -> dict[str, object]:
        return {
            "format": self.format,
            "separator": self.separator,
            "header": self.header,
            "user_column": self.column_label(self.user),
            "item_column": self.column_label(self.item),
            "timestamp_column": self.column_label(self.timestamp),
        }


def split_fields(line: str, separator: str) -> list[str]:
    """Split one line the way the parsers do: quote-aware for single-character separators."""
    if separator == "whitespace":
        return line.split()
    if separator == "::":
        return line.split("::")
    try:
        return next(csv.reader([line], delimiter=separator, quotechar='"', doublequote=True), [""])
    except csv.Error:  # a field longer than csv.field_size_limit()
        return line.split(separator)


def _has_empty_field(line: str) -> bool:
    return line.startswith(" ") or line.endswith(" ") or "  " in line


def normalize_name(name: str) -> str:
    """Lower-case a header name and remove a RecBole type suffix such as ':token'."""
    name = name.strip().lower()
    typed = RECBOLE_TYPED_NAME.fullmatch(name)
    return typed.group(1) if typed else name


def is_number(text: str) -> bool:
    return NUMBER.fullmatch(text.strip()) is not None


def detect_text_layout(
    sample: list[tuple[int, str]], name: str | None, options: ReadOptions
) -> Layout:
    """Work out the layout of a text log from its first non-blank (line number, text) pairs.

    Raises:
        InteractionLogError: the sample is empty, no separator fits, or a column option names
            a column that is not there.
    """
    if not sample:
        raise InteractionLogError("the file is empty: it has no non-blank lines")
    lines = [text for _, text in sample]
    format_name = options.format or _format_from_name_or_header(lines, name)
    separator = options.separator or _detect_separator(lines, format_name, sample[0][0])
    rows = [split_fields(line, separator) for line in lines]
    if format_name is None:
        format_name = _format_from_field_counts(rows, separator)
    header = options.header
    if header is None:
        header = format_name == "inter" or _detect_header(rows, format_name)
    if format_name == "sequence-lines":
        return _sequence_lines_layout(rows, separator, header, options)
    return _columns_layout(rows, separator, header, format_name, options, sample[0])


def _format_from_name_or_header(lines: list[str], name: str | None) -> str | None:
    if name is not None and PurePath(name).suffix.lower() == ".inter":
        return "inter"
    first = lines[0].split("\t")
    if len(first) >= 2 and all(RECBOLE_TYPED_NAME.fullmatch(field.strip()) for field in first):
        return "inter"
    return None


def _detect_separator(lines: list[str], format_name: str | None, first_line: int) -> str:
    if format_name == "inter":
        return "\t"
    if format_name == "sequence-lines":
        return "\t" if all("\t" in line for line in lines) else "whitespace"
    counts = {
        candidate: [len(split_fields(line, candidate)) for line in lines]
        for candidate in SEPARATOR_CANDIDATES
    }
    for candidate in SEPARATOR_CANDIDATES:
        if len(set(counts[candidate])) == 1 and counts[candidate][0] >= 2:
            if candidate != " " or not any(_has_empty_field(line) for line in lines):
                return candidate
    for candidate in MAJORITY_CANDIDATES:
        count, lines_with_count = Counter(counts[candidate]).most_common(1)[0]
        if count >= 2 and lines_with_count > MAJORITY_SHARE * len(lines):
            return candidate
    for candidate in ("\t", "whitespace"):
        if min(counts[candidate]) >= 2:
            return candidate
    raise InteractionLogError(
        "cannot detect the separator: no tab, '::', ';', ',' or space splits the lines into "
        "at least two fields; pass separator",
        line=first_line,
        value=lines[0],
    )


def _format_from_field_counts(rows: list[list[str]], separator: str) -> str:
    counts = Counter(len(row) for row in rows)
    if len(counts) == 1:
        return "delimited"
    if separator in (" ", "whitespace"):
        return "sequence-lines"
    if separator == "\t" and counts.most_common(1)[0][1] <= MAJORITY_SHARE * len(rows):
        return "sequence-lines"
    return "delimited"


def _detect_header(rows: list[list[str]], format_name: str) -> bool:
    first, others = rows[0], rows[1:]
    if any(normalize_name(value) in KNOWN_NAMES for value in first):
        return True
    if not others or format_name == "sequence-lines":
        return False
    for column, name in enumerate(first):
        values = [row[column] for row in others if column < len(row)]
        looks_like_name = any(character.isalpha() for character in name) and not is_number(name)
        if looks_like_name and values and all(is_number(value) for value in values):
            return True
    return False


def _sequence_lines_layout(
    rows: list[list[str]], separator: str, header: bool, options: ReadOptions
) -> Layout:
    for option in ("item_column", "timestamp_column"):
        if getattr(options, option) not in (None, False):
            raise InteractionLogError(
                f"{option} does not apply to sequence-lines, where every field after the user "
                "is an item"
            )
    names = tuple(rows[0]) if header else None
    if options.user_column not in (None, 0) and not (names and options.user_column == names[0]):
        raise InteractionLogError(
            "in sequence-lines the user is always the first field", column=options.user_column
        )
    return Layout("sequence-lines", separator, header, 0, 0, None, None, names)


def _columns_layout(
    rows: list[list[str]],
    separator: str,
    header: bool,
    format_name: str,
    options: ReadOptions,
    first_line: tuple[int, str],
) -> Layout:
    """Resolve the columns of the row formats; first_line is the sample's first (number, text)."""
    names = tuple(rows[0]) if header else None
    data_rows = rows[1:] if header else rows
    if format_name == "sasrec":
        n_fields = 2
    elif header:
        n_fields = len(rows[0])
    else:
        n_fields = Counter(len(row) for row in rows).most_common(1)[0][0]
    if n_fields < 2:
        raise InteractionLogError(
            f"the {'header' if header else 'rows'} must have at least two fields, a user and an "
            f"item; pass separator if {describe_separator(separator)} is not the one",
            line=first_line[0],
            value=first_line[1],
        )

    warnings: list[str] = []
    user = _resolve(options.user_column, "user", names, n_fields, USER_NAMES, 0, warnings)
    if format_name == "item-list-column":
        item_names = ITEM_LIST_NAMES + ITEM_NAMES
    else:
        item_names = ITEM_NAMES + ITEM_LIST_NAMES
    item = _resolve(options.item_column, "item", names, n_fields, item_names, 1, warnings)
    if item == user:
        raise InteractionLogError(
            "the user and item columns are the same column", column=_label(names, user)
        )
    if options.format is None and format_name == "delimited":
        format_name = _refine_delimited_format(data_rows, separator, names, n_fields, item)

    timestamp = None
    if format_name in ("sasrec", "item-list-column"):
        if options.timestamp_column not in (None, False):
            raise InteractionLogError(
                f"{format_name} logs have no timestamp column; they keep file order"
            )
    elif options.timestamp_column is not False:
        timestamp = _resolve(
            options.timestamp_column, "timestamp", names, n_fields, TIMESTAMP_NAMES, None, warnings
        )
        if timestamp is None and not header and options.timestamp_column is None:
            timestamp = _guess_timestamp_by_position(data_rows, n_fields, warnings)
        if timestamp is not None and timestamp in (user, item):
            raise InteractionLogError(
                "the timestamp column is also the user or item column",
                column=_label(names, timestamp),
            )
    return Layout(
        format_name, separator, header, n_fields, user, item, timestamp, names, tuple(warnings)
    )


def _refine_delimited_format(
    data_rows: list[list[str]],
    separator: str,
    names: tuple[str, ...] | None,
    n_fields: int,
    item: int,
) -> str:
    if names is not None and normalize_name(names[item]) in ITEM_LIST_NAMES:
        return "item-list-column"
    lists = [row[item] for row in data_rows if item < len(row) and "," in row[item]]
    if lists and all(_looks_like_id_list(value) for value in lists):
        return "item-list-column"
    if separator in (" ", "whitespace") and n_fields == 2 and names is None:
        return "sasrec"
    return "delimited"


def _looks_like_id_list(value: str) -> bool:
    # "3, 4,5" is a list of ids; "Toy Story, The" is one title with a comma.
    entries = [entry.strip() for entry in value.split(",")]
    return not any(character.isspace() for entry in entries for character in entry)


def _guess_timestamp_by_position(
    data_rows: list[list[str]], n_fields: int, warnings: list[str]
) -> int | None:
    last = n_fields - 1
    numbers = sum(1 for row in data_rows if last < len(row) and is_number(row[last]))
    if n_fields < 3 or numbers <= len(data_rows) / 2:
        return None
    warnings.append(
        f"the file has no header, so column {last} (0-based, the last one) was taken as the "
        "timestamp; choose another with the timestamp column option, or set it to "
        f"{NO_TIMESTAMP_COLUMN!r} to keep file order"
    )
    return last


def _resolve(
    reference: str | int | None,
    role: str,
    names: tuple[str, ...] | None,
    n_fields: int,
    known_names: tuple[str, ...],
    default: int | None,
    warnings: list[str],
) -> int | None:
    """Turn a column option (name, position or None to detect) into a 0-based position."""
    if isinstance(reference, int) and not isinstance(reference, bool):
        if reference >= n_fields:
            raise InteractionLogError(
                f"{role} column position {reference} is out of range: rows have {n_fields} fields",
                column=reference,
            )
        return reference
    if isinstance(reference, str):
        return _find_named_column(reference, role, names)
    if names is None:
        return default
    normalized = [normalize_name(name) for name in names]
    for known in known_names:
        if known in normalized:
            return normalized.index(known)
    if default is not None and default < n_fields:
        warnings.append(
            f"no header name was recognised as the {role} column, so column {default} "
            f"({names[default]!r}) was used; pass {role}_column to choose another"
        )
    return default


def _find_named_column(reference: str, role: str, names: tuple[str, ...] | None) -> int:
    if names is None:
        raise InteractionLogError(
            f"{role}_column {reference!r} is a name, but the file has no header; "
            "pass a 0-based position",
            column=reference,
        )
    if reference in names:
        return names.index(reference)
    normalized = [normalize_name(name) for name in names]
    if normalize_name(reference) in normalized:
        return normalized.index(normalize_name(reference))
    raise InteractionLogError(
        f"{role} column {reference!r} not found; the header has {', '.join(names)}",
        column=reference,
    )


def describe_separator(separator: str) -> str:
    """Name a separator for messages: tab, space, comma, semicolon, whitespace or its text."""
    names = {"\t": "tab", " ": "space", ",": "comma", ";": "semicolon", "whitespace": "whitespace"}
    return names.get(separator, repr(separator))


def _label(names: tuple[str, ...] | None, position: int) -> str | int:
    return names[position] if names is not None and position < len(names) else position
