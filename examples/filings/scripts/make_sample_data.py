#!/usr/bin/env python3
"""Regenerate the shipped sample data: data/entities.json and data/filings/<cik>/<accession>.xml.

Not part of the pipeline. The output is deterministic (no clock, no randomness), so running it
again rewrites the same bytes; the committed files are its output. The companies are fictional.

    python3 scripts/make_sample_data.py        (from examples/filings)
"""
import json
import os

ENTITIES = [
    # cik, ticker, name, sector, number of filings
    ("0000910001", "ACMR", "Acme Robotics Inc.", "Industrials", 3),
    ("0000910002", "BLUH", "Bluehaven Foods Corp.", "Consumer Staples", 4),
    ("0000910003", "CRST", "Crestline Semiconductor Ltd.", "Information Technology", 2),
    ("0000910004", "DRFT", "Driftwood Energy Partners", "Energy", 5),
    ("0000910005", "EMBR", "Ember Health Systems Inc.", "Health Care", 3),
    ("0000910006", "FJRD", "Fjord Shipping ASA", "Industrials", 4),
    ("0000910007", "GLNT", "Gallant Insurance Group", "Financials", 3),
    ("0000910008", "HRBR", "Harbor Lane Retail Co.", "Consumer Discretionary", 5),
    ("0000910009", "IRDS", "Iridis Telecom Inc.", "Communication Services", 2),
    ("0000910010", "JNPR", "Juniper Ridge Utilities", "Utilities", 4),
    ("0000910011", "KSTL", "Kestrel Materials Corp.", "Materials", 3),
    ("0000910012", "LMNA", "Lumina Software Inc.", "Information Technology", 2),
]

# The filings of an entity with n filings are the last n of these, oldest first.
PERIODS = [
    ("10-K", "FY", "2023-01-01", "2023-12-31", "2024-02-20"),
    ("10-Q", "Q1", "2024-01-01", "2024-03-31", "2024-05-02"),
    ("10-Q", "Q2", "2024-01-01", "2024-06-30", "2024-08-01"),
    ("10-Q", "Q3", "2024-01-01", "2024-09-30", "2024-10-31"),
    ("10-K", "FY", "2024-01-01", "2024-12-31", "2025-02-19"),
]

BROKEN = "0000910004-25-000005"     # truncated download: not well-formed XML -> the task fails (exit 65)
BAD_FACT = "0000910008-24-000003"   # one fact whose value is "n/a" -> rejected record, filing still processed


def figures(entity_index, period_index):
    """Deterministic, plausible numbers (thousands of USD)."""
    base = 180_000 + entity_index * 97_331 % 900_000
    months = {"FY": 12, "Q1": 3, "Q2": 6, "Q3": 9}[PERIODS[period_index][1]]
    growth = 1 + 0.012 * period_index + 0.003 * entity_index
    revenue = round(base * growth * months / 12) * 1000
    margin = 0.04 + (entity_index * 37 % 11) / 100
    net_income = round(revenue * margin / 1000) * 1000
    if entity_index == 8 and period_index >= 3:        # Iridis: losses lately
        net_income = -abs(net_income) // 3
    assets = round(base * 2.6 * (1 + 0.01 * period_index)) * 1000
    liabilities = round(assets * (0.35 + (entity_index * 13 % 7) / 20) / 1000) * 1000
    shares = 40_000_000 + entity_index * 7_500_000
    eps = round(net_income / shares, 2)
    return revenue, net_income, assets, liabilities, eps


def filing_xml(entity_index, cik, name, period_index, accession):
    form, fp, start, end, _filed = PERIODS[period_index]
    fy = end[:4]
    revenue, net_income, assets, liabilities, eps = figures(entity_index, period_index)
    dur = f"D{fy}{fp}"
    inst = f"I{end.replace('-', '')}"
    entity = f'<xbrli:entity><xbrli:identifier scheme="http://www.sec.gov/CIK">{cik}</xbrli:identifier></xbrli:entity>'
    revenue_text = "n/a" if accession == BAD_FACT else str(revenue)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<xbrli:xbrl xmlns:xbrli="http://www.xbrl.org/2003/instance"',
        '            xmlns:iso4217="http://www.xbrl.org/2003/iso4217"',
        '            xmlns:dei="http://xbrl.sec.gov/dei/2024"',
        '            xmlns:us-gaap="http://fasb.org/us-gaap/2024">',
        f'  <xbrli:context id="{dur}">{entity}<xbrli:period><xbrli:startDate>{start}</xbrli:startDate><xbrli:endDate>{end}</xbrli:endDate></xbrli:period></xbrli:context>',
        f'  <xbrli:context id="{inst}">{entity}<xbrli:period><xbrli:instant>{end}</xbrli:instant></xbrli:period></xbrli:context>',
        '  <xbrli:unit id="USD"><xbrli:measure>iso4217:USD</xbrli:measure></xbrli:unit>',
        '  <xbrli:unit id="USDPerShare"><xbrli:divide><xbrli:unitNumerator><xbrli:measure>iso4217:USD</xbrli:measure></xbrli:unitNumerator>'
        '<xbrli:unitDenominator><xbrli:measure>xbrli:shares</xbrli:measure></xbrli:unitDenominator></xbrli:divide></xbrli:unit>',
        f'  <dei:EntityCentralIndexKey contextRef="{dur}">{cik}</dei:EntityCentralIndexKey>',
        f'  <dei:EntityRegistrantName contextRef="{dur}">{name.replace("&", "&amp;")}</dei:EntityRegistrantName>',
        f'  <dei:DocumentType contextRef="{dur}">{form}</dei:DocumentType>',
        f'  <dei:DocumentFiscalYearFocus contextRef="{dur}">{fy}</dei:DocumentFiscalYearFocus>',
        f'  <dei:DocumentFiscalPeriodFocus contextRef="{dur}">{fp}</dei:DocumentFiscalPeriodFocus>',
        f'  <us-gaap:Revenues contextRef="{dur}" unitRef="USD" decimals="-3">{revenue_text}</us-gaap:Revenues>',
        f'  <us-gaap:NetIncomeLoss contextRef="{dur}" unitRef="USD" decimals="-3">{net_income}</us-gaap:NetIncomeLoss>',
        f'  <us-gaap:EarningsPerShareBasic contextRef="{dur}" unitRef="USDPerShare" decimals="2">{eps:.2f}</us-gaap:EarningsPerShareBasic>',
        f'  <us-gaap:Assets contextRef="{inst}" unitRef="USD" decimals="-3">{assets}</us-gaap:Assets>',
        f'  <us-gaap:Liabilities contextRef="{inst}" unitRef="USD" decimals="-3">{liabilities}</us-gaap:Liabilities>',
        '</xbrli:xbrl>',
    ]
    text = "\n".join(lines) + "\n"
    if accession == BROKEN:
        text = text[: text.index("<us-gaap:Assets") + 30]       # the download stopped mid-element
    return text


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = os.path.join(here, "data")
    entities = []
    total = 0
    for i, (cik, ticker, name, sector, n) in enumerate(ENTITIES):
        entities.append({"cik": cik, "ticker": ticker, "name": name, "sector": sector})
        folder = os.path.join(data, "filings", cik)
        os.makedirs(folder, exist_ok=True)
        for p in range(len(PERIODS) - n, len(PERIODS)):
            filed = PERIODS[p][4]
            accession = f"{cik}-{filed[2:4]}-{p + 1:06d}"
            with open(os.path.join(folder, accession + ".xml"), "w", encoding="utf-8", newline="\n") as f:
                f.write(filing_xml(i, cik, name, p, accession))
            total += 1
    with open(os.path.join(data, "entities.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(entities, f, indent=2)
        f.write("\n")
    print(f"make_sample_data: {len(entities)} entities, {total} filings in {data}")


if __name__ == "__main__":
    main()
