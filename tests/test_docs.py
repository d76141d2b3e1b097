"""Cross-references resolve: every "protocol.md §N" (or "§N.M": row M of section N's table,
or a heading) and every "design.md, decision N" cited in the code, the docs and the README
names a section that exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
DESIGN = (ROOT / "docs" / "design.md").read_text()
SOURCES = [p for d in ("src", "docs", "benchmarks", "tests") for p in (ROOT / d).rglob("*")
           if p.suffix in (".py", ".md", ".toml")] + [ROOT / "README.md"]


def cited(pattern: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in SOURCES:
        for m in re.finditer(pattern, path.read_text()):
            out.setdefault(m.group(1), []).append(str(path.relative_to(ROOT)))
    return out


def protocol_section(number: str) -> str | None:
    m = re.search(rf"^## §{number} .*?(?=^## §|\Z)", PROTOCOL, re.M | re.S)
    return m.group(0) if m else None


def test_protocol_references_resolve():
    refs = cited(r"protocol\.md,? §(\d+(?:\.\d+)?)")
    assert refs
    missing = {}
    for ref, where in refs.items():
        section, _, sub = ref.partition(".")
        body = protocol_section(section)
        ok = body is not None and (not sub or re.search(rf"^\| {sub}[a-z]? \||§{ref}\b", body,
                                                        re.M) is not None)
        if not ok:
            missing[ref] = sorted(set(where))
    assert missing == {}


def test_design_decisions_resolve():
    refs = cited(r"design\.md,? decision (\d+)")
    assert refs
    headings = set(re.findall(r"^## Decision (\d+):", DESIGN, re.M))
    assert {r: w for r, w in refs.items() if r not in headings} == {}


def test_no_stale_spec_citations():
    """The package has no SPEC: it cites docs/protocol.md."""
    stale = [str(p.relative_to(ROOT)) for p in SOURCES
             if re.search(r"\bSPEC\b", p.read_text()) and p.name != "test_docs.py"]
    assert stale == []
