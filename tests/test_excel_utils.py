"""The .xls and CSV reports: round trips, appending across processes, the 65,536-row limit."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import xlrd

from utils import excel_utils
from utils.excel_utils import append_rows, read_column, read_provenance, read_sheet, write_csv, write_sheet
from utils.provenance import REPO_ROOT

HEADER = ["task", "model", "cut_point", "predicted_total_ms", "fallback", "top1"]


def test_round_trip_keeps_cell_types(tmp_path):
    path = tmp_path / "report.xls"
    rows = [[1, "alex_net", 3, 126.28, False, 18],
            {"task": 2, "model": "vgg_net", "cut_point": 53, "predicted_total_ms": 340.7,
             "fallback": True, "top1": None},
            [3, "le_net", 0, float("inf"), False]]          # short row: padded with empty cells
    write_sheet(path, HEADER, rows, provenance={"commit": "abc1234", "threads": 1})
    header, back = read_sheet(path)
    assert header == HEADER
    assert back == [[1, "alex_net", 3, 126.28, False, 18],
                    [2, "vgg_net", 53, 340.7, True, None],
                    [3, "le_net", 0, float("inf"), False, None]]
    assert isinstance(back[0][2], int) and isinstance(back[1][4], bool)
    assert xlrd.open_workbook(str(path)).sheet_names() == ["tasks", "provenance"]
    assert read_provenance(path) == {"commit": "abc1234", "threads": 1}
    assert read_sheet(path, "provenance") == (["key", "value"], [["commit", "abc1234"], ["threads", 1]])


def test_append_to_a_file_written_by_an_earlier_process(tmp_path):
    path = tmp_path / "tasks.xls"
    code = ("import sys; from utils.excel_utils import write_sheet; "
            f"write_sheet(sys.argv[1], {HEADER!r}, [[1, 'le_net', 13, 4.6, False, 7], "
            "[2, 'alex_net', 3, 126.3, True, 18]], provenance={'seed': 0})")
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, check=True, timeout=60)
    append_rows(path, [[3, "vgg_net", 44, 512.5, False, 2],
                       {"task": 4, "model": "mobile_net", "fallback": False}])
    header, rows = read_sheet(path, "tasks")
    assert header == HEADER
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[1] == [2, "alex_net", 3, 126.3, True, 18]
    assert rows[3] == [4, "mobile_net", None, None, False, None]
    assert read_provenance(path) == {"seed": 0}              # the other sheet survives the rewrite
    assert read_column(path, "model") == ["le_net", "alex_net", "vgg_net", "mobile_net"]


def test_full_sheets_continue_on_new_sheets_and_nothing_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(excel_utils, "MAX_ROWS_PER_SHEET", 10)   # 9 data rows + header a sheet
    path = tmp_path / "long.xls"
    write_sheet(path, ["i", "ok"], [[i, i % 3 == 0] for i in range(20)], provenance={"seed": 1})
    assert xlrd.open_workbook(str(path)).sheet_names() == ["tasks", "tasks_2", "tasks_3", "provenance"]
    for batch in range(3):                                      # appends fill the last sheet, then more
        append_rows(path, [[i, i % 3 == 0] for i in range(20 + 5 * batch, 25 + 5 * batch)])
    book = xlrd.open_workbook(str(path))
    assert book.sheet_names() == ["tasks", "tasks_2", "tasks_3", "tasks_4", "provenance"]
    for name in book.sheet_names()[:4]:
        sheet = book.sheet_by_name(name)
        assert sheet.nrows <= 10 and sheet.row_values(0) == ["i", "ok"]
    header, rows = read_sheet(path)
    assert header == ["i", "ok"] and rows == [[i, i % 3 == 0] for i in range(35)]
    assert read_column(path, "i", "tasks") == list(range(35))
    assert read_provenance(path) == {"seed": 1}


@pytest.mark.slow
def test_the_real_row_limit(tmp_path):
    """65,535 data rows fill the first sheet exactly; two more go to tasks_2 (about 3 s)."""
    assert excel_utils.MAX_ROWS_PER_SHEET == 65536
    path = tmp_path / "full.xls"
    write_sheet(path, ["i"], [[i] for i in range(65535)])
    assert xlrd.open_workbook(str(path), on_demand=True).sheet_names() == ["tasks"]
    append_rows(path, [[65535], [65536]])
    book = xlrd.open_workbook(str(path))
    assert book.sheet_names() == ["tasks", "tasks_2"]
    assert book.sheet_by_name("tasks").nrows == 65536 and book.sheet_by_name("tasks_2").nrows == 3
    assert read_column(path, "i") == list(range(65537))


def test_unknown_column_names_the_columns(tmp_path):
    path = tmp_path / "r.xls"
    write_sheet(path, HEADER, [[1, "le_net", 2, 3.0, False, 4]])
    with pytest.raises(KeyError, match="no column 'latency'.*'cut_point'.*'top1'"):
        read_column(path, "latency")
    with pytest.raises(KeyError, match="no sheet 'nope'.*'tasks'"):
        read_sheet(path, "nope")
    with pytest.raises(ValueError, match="not columns"):
        append_rows(path, [{"task": 2, "latency": 1.0}])


def test_csv_twin_carries_provenance(tmp_path):
    path = tmp_path / "r.csv"
    write_csv(path, HEADER, [[1, "le_net", 13, 4.6, False, 7], {"task": 2, "model": "alex_net"}],
              provenance={"commit": "abc1234", "seed": 0})
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(HEADER)  # plain: any CSV reader reads it as it is
    assert json.loads((tmp_path / "r.provenance.json").read_text()) == {"commit": "abc1234", "seed": 0}
    df = pd.read_csv(path)
    assert list(df.columns) == HEADER and df["model"].tolist() == ["le_net", "alex_net"]
    assert df["cut_point"].iloc[0] == 13 and pd.isna(df["cut_point"].iloc[1])


def test_provenance_records_how_long_the_command_ran():
    from utils.provenance import provenance
    code = "import time; time.sleep(1.5); from utils.provenance import provenance; print(provenance()['run_s'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 2  # the sleep and the imports, from the process's start (rounded)
    assert provenance(run_s=7)["run_s"] == 7  # a benchmark that times its own run wins
