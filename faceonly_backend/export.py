"""The attendance report as files HR tools take: CSV (UTF-8, one header row) and XLSX (openpyxl).

One row per person per day: the date and times in the site's time zone (named in the file), time worked as
H:MM and as decimal hours (a number cell in XLSX), the doors used, the number of punches counted, whether a
punch is missing (and which), and how many were added by hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    "date",
    "subject",
    "name",
    "group",
    "first_in",
    "last_out",
    "worked",
    "worked_hours",
    "doors",
    "punches",
    "missing_punch",
    "missing",
    "manual_punches",
    "time_zone",
)


def table(days: Sequence[dict[str, Any]], time_zone: str) -> list[list[Any]]:
    """The report's rows as cells, header first."""
    rows: list[list[Any]] = [list(COLUMNS)]
    for d in days:
        counted = [p for p in d["punches"] if p["counted"] != "repeat"]
        rows.append(
            [
                d["date"],
                d["subject"],
                d["name"] or "",
                d["group"] or "",
                d["first_in"] or "",
                d["last_out"] or "",
                d["worked"],
                round(d["worked_s"] / 3600, 2),
                " ".join(d["doors"]),
                len(counted),
                "yes" if d["missing_punch"] else "no",
                "; ".join(d["missing"]),
                d["manual"],
                time_zone,
            ]
        )
    return rows


def to_csv(days: Sequence[dict[str, Any]], time_zone: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(table(days, time_zone))
    return buf.getvalue().encode("utf-8")


def to_xlsx(days: Sequence[dict[str, Any]], time_zone: str, title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Attendance"
    rows = table(days, time_zone)
    for n, row in enumerate(rows):
        if n:
            row = [dt.date.fromisoformat(row[0]), *row[1:]]
        sheet.append(row)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for cell in sheet["A"][1:]:
        cell.number_format = "yyyy-mm-dd"
    for cell in sheet["H"][1:]:
        cell.number_format = "0.00"
    sheet.freeze_panes = "A2"
    for column, width in zip(
        "ABCDEFGHIJKLMN", (11, 14, 24, 14, 9, 9, 8, 12, 20, 8, 13, 40, 14, 16), strict=True
    ):
        sheet.column_dimensions[column].width = width
    book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
