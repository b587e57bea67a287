#!/usr/bin/env python3
"""Writes a CSV file as a one-sheet Excel workbook (.xlsx), with the standard library only.

    python3 scripts/make_xlsx.py samples/source/asegurados_viajeros.csv samples/asegurados_viajeros.xlsx

This is how samples/asegurados_viajeros.xlsx was made: the insurer sends Viajeros as Excel, and the
`convert` stage of viajeros.yml turns it back into CSV. Text cells are shared strings, numbers are
numbers, like a workbook saved by Excel or LibreOffice.
"""

import csv
import sys
import zipfile
from xml.sax.saxutils import escape


def column(index):
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def is_number(text):
    try:
        float(text)
        return text.strip() != "" and not text.strip().startswith("+")
    except ValueError:
        return False


def main(source, target):
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    strings, index = [], {}
    sheet_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = "%s%d" % (column(c), r)
            if value == "":
                continue
            if r > 1 and is_number(value):
                cells.append('<c r="%s"><v>%s</v></c>' % (ref, value))
            else:
                if value not in index:
                    index[value] = len(strings)
                    strings.append(value)
                cells.append('<c r="%s" t="s"><v>%d</v></c>' % (ref, index[value]))
        sheet_rows.append('<row r="%d">%s</row>' % (r, "".join(cells)))
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    files = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        "</Types>",
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="%s/officeDocument" Target="xl/workbook.xml"/></Relationships>' % rel,
        "xl/workbook.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook %s xmlns:r="%s"><sheets><sheet name="Asegurados" sheetId="1" r:id="rId1"/></sheets></workbook>' % (ns, rel),
        "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="%s/worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="%s/sharedStrings" Target="sharedStrings.xml"/></Relationships>' % (rel, rel),
        "xl/worksheets/sheet1.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        "<worksheet %s><sheetData>%s</sheetData></worksheet>" % (ns, "".join(sheet_rows)),
        "xl/sharedStrings.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<sst %s count="%d" uniqueCount="%d">%s</sst>'
        % (ns, len(strings), len(strings), "".join("<si><t>%s</t></si>" % escape(s) for s in strings)),
    }
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 3, 7, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text.encode("utf-8"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_xlsx.py SOURCE.csv TARGET.xlsx")
    main(sys.argv[1], sys.argv[2])
