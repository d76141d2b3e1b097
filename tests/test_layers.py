"""The package's layers import downward only: every import of a groklab module, at module
level, inside a function or under TYPE_CHECKING, goes to the same layer or a lower one; the
leaves import nothing of groklab; nothing imports the CLI; and there is no import circle.
The layers are read from docs/design.md's Layers block, the one place they are written; the
block names only modules that exist, and README's code layout lists them in the same order."""

import ast
import re
from pathlib import Path

import groklab

SRC = Path(groklab.__file__).parent

ROOT = Path(__file__).resolve().parents[1]
DESIGN = (ROOT / "docs" / "design.md").read_text()


def module_of(path: str) -> str:
    """A path as docs/design.md writes it -> its module: ``cli/`` -> ``groklab.cli``,
    ``api.py`` -> ``groklab.api``, ``groklab/__init__.py`` -> ``groklab``."""
    parts = path.removesuffix("/").removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["groklab", *(parts[1:] if parts[:1] == ["groklab"] else parts)])


def design_layers() -> list[tuple[str, list[str], str]]:
    """The layers of docs/design.md's Layers block, lowest first: each row's names (its first
    line up to two spaces), their modules and the row's whole text."""
    block = re.search(r"^## Layers\n.*?^```\n(.*?)^```", DESIGN, re.M | re.S)
    assert block, "docs/design.md has no Layers block"
    rows: list[list[str]] = []
    for line in block.group(1).splitlines():
        if line and not line[0].isspace():
            rows.append([line])
        elif line.strip():
            rows[-1].append(line)
    out = []
    for row in reversed(rows):
        names = re.split(r"\s{2,}", row[0].strip(), maxsplit=1)[0]
        out.append((names, [module_of(n) for n in names.split(", ")], " ".join(row)))
    return out


# lowest first; a module belongs to the layer of the longest name that is it or a package of it
LAYERS = [(names, modules) for names, modules, _ in design_layers()]


def module_names() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["groklab", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def layer_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to docs/design.md's Layers"
    return best[0]


def imports(module: str, path: Path) -> set[str]:
    """Every groklab module ``module`` imports (resolved to a module of the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert not node.level, f"{module}: relative import"
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t.startswith("groklab") and t != module:
                found.add(t)
    return found


GRAPH = {m: imports(m, p) for m, p in MODULES.items()}
# a package's __init__ re-exporting its children is not a circle of design: a module's import
# of its own package (``from groklab.report import figures`` inside groklab.report.lm) is
# left out of the circle check, as shared/tools/import_cycles.py does
DESIGN_GRAPH = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in GRAPH.items()}


def test_every_import_goes_down_or_sideways():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in GRAPH.items() for t in sorted(targets)
              if layer_of(t) > layer_of(m)]
    assert upward == []


def test_nothing_imports_the_cli():
    assert sorted(m for m, targets in GRAPH.items() if not m.startswith("groklab.cli")
                  and any(t.startswith("groklab.cli") for t in targets)) == []


def test_leaves_import_nothing_of_groklab():
    leaves = [m for m in MODULES if layer_of(m) == 0]
    assert sorted(leaves) == sorted(LAYERS[0][1])
    assert {m: sorted(GRAPH[m]) for m in leaves if GRAPH[m]} == {}


def test_the_layers_block_names_only_what_exists():
    """Every module a row of the block names exists, and so does every file it mentions
    (``state.py``: a module of the row's packages): a renamed or removed module fails here
    until the block says so."""
    ghosts = []
    for names, modules, text in design_layers():
        ghosts += [m for m in modules if m not in MODULES]
        for file in re.findall(r"[\w/]+\.py\b", text):
            inner = file.removesuffix(".py").replace("/", ".")
            if module_of(file) not in MODULES and not any(
                    f"{m}.{inner}" in MODULES for m in modules):
                ghosts.append(f"{file} ({names})")
    assert ghosts == []


def test_the_readme_code_layout_names_every_layer_lowest_first():
    """README's code layout names every layer's modules (in backquotes), lowest first."""
    readme = (ROOT / "README.md").read_text()
    para = re.search(r"^Code layout \(layers, lowest first.*?\): (.*?) on top\.", readme,
                     re.M | re.S)
    assert para, "README.md has no code layout paragraph"
    named = [module_of(n) for n in re.findall(r"`([\w/]+(?:/|\.py))`", para.group(1))]
    assert sorted(named) == sorted(m for _, modules in LAYERS for m in modules)
    ranks = [layer_of(m) for m in named]
    assert ranks == sorted(ranks), [m for m, r in zip(named, ranks, strict=True)]


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in DESIGN_GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in DESIGN_GRAPH:
        if v not in index:
            visit(v)
    assert circles == []
