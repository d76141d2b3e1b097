"""Cross-references resolve: every "protocol.md §N" (or "§N.M": row M of section N's table,
or a heading) and every "design.md, decision N" cited in the code, the docs and the README
names a section that exists, and the sentence that cites a decision names its subject (a
word of the decision's title), so a citation of the wrong decision fails."""

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


# "decision 3", "decisions 2-4 and 11", "decisions 11 and 14": every decision of docs/design.md
# cited anywhere (the repository has no other numbered decisions)
CITATION = re.compile(r"\b[Dd]ecisions? (\d+(?:\s*[-–]\s*\d+)?(?:(?:,\s*|,?\s+and\s+)\d+"
                      r"(?:\s*[-–]\s*\d+)?)*)")
TITLES = dict(re.findall(r"^## Decision (\d+): (.+)$", DESIGN, re.M))
# words of a title that say nothing of its subject
FILLER = {"and", "are", "does", "every", "its", "not", "only", "over", "own", "run", "separate",
          "small", "stay", "the", "what", "describes"}


def stem(word: str) -> str:
    word = word.lower().removesuffix("'s")
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def keywords(title: str) -> set[str]:
    """The words of a decision's title that name its subject: ``"The store is the truth"``
    -> ``{"store", "truth"}``."""
    return {stem(w) for w in re.findall(r"[\w']+", title) if len(w) >= 3
            and stem(w) not in FILLER and w.lower() not in FILLER}


def says(text: str, keyword: str) -> bool:
    """Whether ``text`` has a word of the same stem as ``keyword`` (the first five letters,
    all of a shorter keyword): "cohort" in "cohorts", "optimiser" in "optimizer"."""
    n = min(5, len(keyword))
    return any(len(w) >= n and w[:n] == keyword[:n]
               for w in (stem(w) for w in re.findall(r"[\w']+", text)))


def numbers(cited: str) -> list[int]:
    """``"2-4 and 11"`` -> ``[2, 3, 4, 11]``."""
    return [n for a, b in re.findall(r"(\d+)(?:\s*[-–]\s*(\d+))?", cited)
            for n in range(int(a), int(b or a) + 1)]


def sentence(text: str, start: int, end: int) -> str:
    """The sentence around ``text[start:end]`` (a comment: its whole line), citation left out."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end) % (len(text) + 1)
    if "# " in text[line_start:start] and not text[line_start:start].lstrip().startswith("#"):
        return text[line_start:start] + text[end:line_end]
    a = max(text.rfind(d, 0, start) + len(d) for d in (". ", ".\n", '"""', "\n\n"))
    b = min((i for i in (text.find(d, end) for d in (". ", ".\n", '"""', "\n\n")) if i >= 0),
            default=len(text))
    return text[max(a, 0):start] + text[end:b]


def miscited(text: str) -> list[str]:
    """Every citation of a decision in ``text`` whose sentence has no keyword of the
    decision's title (or that names no decision), with its sentence."""
    out = []
    for m in CITATION.finditer(text):
        if text[max(0, m.start() - 3):m.start()] == "## ":
            continue  # a decision's own heading
        around = sentence(text, m.start(), m.end())
        for n in numbers(m.group(1)):
            title = TITLES.get(str(n))
            if title is None or not any(says(around, k) for k in keywords(title)):
                out.append(f"decision {n} ({title or 'none'}): {' '.join(around.split())}")
    return out


def test_design_decisions_resolve():
    refs = cited(r"design\.md,? decision (\d+)")
    assert refs
    assert {r: w for r, w in refs.items() if r not in TITLES} == {}


def test_a_cited_decision_is_the_one_the_sentence_means():
    """A sentence that cites a decision names its subject: a word of the decision's title
    ("... stored next to the run store (docs/design.md, decision 6)": The store is the truth),
    or the title itself after the number ("decision 15: every run lives its own life")."""
    assert all(keywords(title) for title in TITLES.values()), "a title of filler words only"
    assert miscited("the store records it as finished (docs/design.md, decision 6)") == []
    assert miscited("the store records it as finished (docs/design.md, decision 9)") != []
    assert miscited("ragged splits (decisions 3 and 16)") != []
    assert miscited("SEMANTICS = 2  # the meaning of a run (decision 12)") == []
    wrong = {str(p.relative_to(ROOT)): found for p in SOURCES if p.name != "test_docs.py"
             if (found := miscited(p.read_text()))}
    assert wrong == {}


def test_no_stale_spec_citations():
    """The package has no SPEC: it cites docs/protocol.md."""
    stale = [str(p.relative_to(ROOT)) for p in SOURCES
             if re.search(r"\bSPEC\b", p.read_text()) and p.name != "test_docs.py"]
    assert stale == []
