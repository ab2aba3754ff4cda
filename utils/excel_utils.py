"""Reports as .xls (written with xlwt, read with xlrd) and as CSV with provenance comments.

An .xls sheet holds at most 65,536 rows. A table longer than that continues on sheets named
`tasks_2`, `tasks_3`, ... with the same header, and reading `tasks` returns the rows of all of
them in order: no row is ever dropped. xlwt cannot edit a file, so appending reads the whole
workbook back and writes it again (every sheet, header and cell type kept).

Cell types: numbers stay numbers (integral values come back as int), bools come back as bool,
None is an empty cell and comes back as None, anything else is written as its str().
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

import xlrd
import xlwt

MAX_ROWS_PER_SHEET = 65536      # the .xls format's limit, header row included
MAX_SHEET_NAME_CHARS = 31       # the .xls format's limit on a sheet name
PROVENANCE_SHEET = "provenance"
_EXACT_INT_LIMIT = 2**53        # an .xls number is a double: larger ints are kept as text
_HEADER_STYLE = xlwt.easyxf("font: bold on")


# ----------------------------------------------------------------------------- writing

def write_sheet(path, header: list[str], rows: list, sheet_name: str = "tasks",
                provenance: dict | None = None) -> None:
    """A new .xls: the table on `sheet_name` (and its continuation sheets), then, if given,
    a sheet "provenance" with one key/value row per entry."""
    header = [str(h) for h in header]
    sheets = [(sheet_name, header, [_as_list(r, header) for r in rows])]
    if provenance is not None:
        sheets.append((PROVENANCE_SHEET, ["key", "value"], [[k, v] for k, v in provenance.items()]))
    _save(path, _split_long_tables(sheets))


def append_rows(path, rows: list, sheet_name: str = "tasks") -> None:
    """Append rows to the table `sheet_name` of an existing .xls, continuing on a new sheet when
    the last one is full. Rows may be lists (in header order) or dicts keyed by the header."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no report at {path}: write it with write_sheet first")
    book = _read_book(path)
    names = [name for name, _, _ in book]
    group = _group_names(names, sheet_name)
    if not group:
        raise KeyError(f"{path} has no sheet {sheet_name!r}; its sheets are {names}")
    header = book[names.index(group[0])][1]
    new_rows = [_as_list(r, header) for r in rows]
    # Gather the table from all its sheets, put it back where the first sheet was, re-split.
    table_rows = [row for name, _, sheet_rows in book if name in group for row in sheet_rows]
    first = names.index(group[0])
    others = [s for s in book if s[0] not in group]
    sheets = others[:first] + [(sheet_name, header, table_rows + new_rows)] + others[first:]
    _save(path, _split_long_tables(sheets))


def write_csv(path, header: list[str], rows: list, provenance: dict | None = None) -> None:
    """The CSV twin of write_sheet: a plain CSV (header and rows), its provenance beside it in
    NAME.provenance.json."""
    from utils.provenance import write_csv_with_provenance  # imports torch: only when needed
    header = [str(h) for h in header]
    dict_rows = [dict(zip(header, _as_list(r, header))) for r in rows]
    write_csv_with_provenance(Path(path), dict_rows, header, provenance or {})


def _as_list(row, header: list[str]) -> list:
    if isinstance(row, dict):
        unknown = [k for k in row if k not in header]
        if unknown:
            raise ValueError(f"row has keys {unknown} that are not columns; columns: {header}")
        return [row.get(h) for h in header]
    row = list(row)
    if len(row) > len(header):
        raise ValueError(f"row has {len(row)} cells but the header has {len(header)} columns: {row}")
    return row + [None] * (len(header) - len(row))


def _split_long_tables(sheets: list[tuple[str, list, list]]) -> list[tuple[str, list, list]]:
    """Cut every table into sheets of at most MAX_ROWS_PER_SHEET rows, header included."""
    per_sheet = MAX_ROWS_PER_SHEET - 1
    out = []
    for name, header, rows in sheets:
        out.append((name, header, rows[:per_sheet]))
        for i, start in enumerate(range(per_sheet, len(rows), per_sheet), start=2):
            out.append((continuation_name(name, i), header, rows[start:start + per_sheet]))
    return out


def continuation_name(base: str, i: int) -> str:
    """The i-th sheet of table `base` (i >= 2): `tasks_2`, `tasks_3`, ... within 31 characters."""
    suffix = f"_{i}"
    return base[:MAX_SHEET_NAME_CHARS - len(suffix)] + suffix


def _save(path, sheets: list[tuple[str, list, list]]) -> None:
    book = xlwt.Workbook(encoding="utf-8")
    for name, header, rows in sheets:
        if len(name) > MAX_SHEET_NAME_CHARS:
            raise ValueError(f"sheet name {name!r} is longer than {MAX_SHEET_NAME_CHARS} characters")
        sheet = book.add_sheet(name)
        for col, title in enumerate(header):
            sheet.write(0, col, title, _HEADER_STYLE)
            sheet.col(col).width = 256 * min(max(len(title) + 2, 10), 60)  # 1/256 of a char
        for r, row in enumerate(rows, start=1):
            for col, value in enumerate(row):
                if value is not None:
                    sheet.write(r, col, _cell_value(value))
    # Write beside the file, then rename: a crash mid-write never leaves half a report.
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    book.save(str(tmp))
    os.replace(tmp, path)


def _cell_value(value):
    kind = type(value)
    if kind is str or kind is float:                  # the common cases first: this runs per cell
        return value
    if kind is int:
        return value if -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT else str(value)
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool too
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value) if abs(int(value)) <= _EXACT_INT_LIMIT else str(int(value))
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


# ----------------------------------------------------------------------------- reading

def read_sheet(path, sheet_name: str | None = None) -> tuple[list[str], list[list]]:
    """(header, rows) of the table `sheet_name` (default: the first sheet), continuation sheets
    included."""
    book = _read_book(path)
    names = [name for name, _, _ in book]
    base = sheet_name if sheet_name is not None else names[0]
    group = _group_names(names, base)
    if not group:
        raise KeyError(f"{path} has no sheet {base!r}; its sheets are {names}")
    header = book[names.index(group[0])][1]
    rows = [row for name, _, sheet_rows in book if name in group for row in sheet_rows]
    return header, rows


def read_column(path, column_name: str, sheet_name: str | None = None) -> list:
    header, rows = read_sheet(path, sheet_name)
    if column_name not in header:
        raise KeyError(f"no column {column_name!r} in {path}; the columns are {header}")
    col = header.index(column_name)
    return [row[col] for row in rows]


def read_provenance(path) -> dict:
    """The key/value pairs of the "provenance" sheet ({} when there is none)."""
    try:
        _, rows = read_sheet(path, PROVENANCE_SHEET)
    except KeyError:
        return {}
    return {str(key): value for key, value in rows}


def _group_names(names: list[str], base: str) -> list[str]:
    """`base` and its continuation sheets base_2, base_3, ... in order (stops at the first gap)."""
    if base not in names:
        return []
    group, i = [base], 2
    while continuation_name(base, i) in names:
        group.append(continuation_name(base, i))
        i += 1
    return group


def _read_book(path) -> list[tuple[str, list[str], list[list]]]:
    """Every sheet as (name, header, rows); rows padded to the header's width."""
    book = xlrd.open_workbook(str(path))
    sheets: list[tuple[str, list[str], list[list]]] = []
    for sheet in book.sheets():
        if sheet.nrows == 0:
            sheets.append((sheet.name, [], []))
            continue
        header = [str(_from_cell(t, v, book.datemode))
                  for t, v in zip(sheet.row_types(0), sheet.row_values(0))]
        width = len(header)
        rows = []
        for r in range(1, sheet.nrows):
            row = [_from_cell(t, v, book.datemode)
                   for t, v in zip(sheet.row_types(r), sheet.row_values(r))]
            rows.append(row + [None] * (width - len(row)))
        sheets.append((sheet.name, header, rows))
    return sheets


def _from_cell(ctype: int, value, datemode: int):
    if ctype == xlrd.XL_CELL_NUMBER:
        return int(value) if value.is_integer() and abs(value) <= _EXACT_INT_LIMIT else value
    if ctype == xlrd.XL_CELL_TEXT:
        return value
    if ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    if ctype == xlrd.XL_CELL_BOOLEAN:
        return bool(value)
    if ctype == xlrd.XL_CELL_DATE:  # never written here, but a report edited in Excel may hold one
        return xlrd.xldate_as_datetime(value, datemode).isoformat(sep=" ")
    if ctype == xlrd.XL_CELL_ERROR:
        return xlrd.error_text_from_code.get(value, "#ERR")
    return value
