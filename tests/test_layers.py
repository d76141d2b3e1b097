"""The package's layers import downward only (docs/design.md, Layers): every import of a
groklab module, at module level, inside a function or under TYPE_CHECKING, goes to the same
layer or a lower one; the leaves import nothing of groklab; nothing imports the CLI; and
there is no import circle."""

import ast
from pathlib import Path

import groklab

SRC = Path(groklab.__file__).parent

# lowest first; a module belongs to the first entry that is it or one of its packages
LAYERS = [
    ("leaves", ["groklab.records", "groklab.rates", "groklab.claims", "groklab.format",
                "groklab.registry", "groklab.progress", "groklab.recipes"]),
    ("tasks", ["groklab.tasks"]),
    ("models", ["groklab.models"]),
    ("measures", ["groklab.measures"]),
    ("spec", ["groklab.spec"]),
    ("optim", ["groklab.optim"]),
    ("store", ["groklab.store"]),
    ("lm", ["groklab.lm"]),
    ("engine", ["groklab.engine"]),
    ("studies", ["groklab.studies"]),
    ("integrations", ["groklab.integrations", "groklab.tune"]),
    ("report", ["groklab.report"]),
    ("api", ["groklab.api", "groklab.bench"]),
    ("package", ["groklab"]),
    ("cli", ["groklab.cli"]),
]


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
    assert best is not None, f"{module} is in no layer: add it to docs/design.md and LAYERS"
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
