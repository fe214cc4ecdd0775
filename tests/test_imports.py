"""The package's import graph: no circle, and no import against the layer order of README's Layout section."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tvt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """tvt module -> the tvt modules it imports (at module level or inside functions; ``from p import m`` of a
    submodule counts as importing ``p.m``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def readme_layers() -> dict[str, int]:
    """README's "Import layers" list: dotted names under tvt -> layer number (1 = lowest)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("Import layers"):].split("```")[1]
    layers = {}
    for line in block.splitlines():
        match = re.match(r"^\s*(\d+)\s+(.+)$", line)
        if match:
            layers.update({f"tvt.{name}": int(match[1]) for name in match[2].split()})
    assert layers, "README's Layout section lists no import layers"
    return layers


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest listed name that is ``module`` or a package above it."""
    for name in sorted(layers, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return layers[name]
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles (strongly connected components of more than one module), Tarjan's algorithm."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_imports_follow_the_readme_layers():
    graph, layers = import_graph(), readme_layers()
    unlisted = sorted(m for m in graph if m != "tvt" and layer_of(m, layers) is None)
    assert not unlisted, f"modules in no layer of README's Layout section: {unlisted}"
    upward = [f"{m} (layer {layer_of(m, layers)}) imports {t} (layer {layer_of(t, layers)})"
              for m in sorted(graph) if m != "tvt" for t in sorted(graph[m])
              if layer_of(t, layers) > layer_of(m, layers)]
    assert not upward, "imports against README's layer order:\n" + "\n".join(upward)


def test_the_checks_catch_a_circle_and_an_upward_import():
    """The checks above can fail: a made-up circle is found, a made-up upward import is named."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    layers = {"tvt.errors": 1, "tvt.models": 4, "tvt.models.sd21": 2}
    assert layer_of("tvt.models.vae", layers) == 4 and layer_of("tvt.models.sd21", layers) == 2
    assert layer_of("tvt.demo", layers) is None


def test_readme_layout_names_every_module():
    """README's Layout block names each top-level module as tvt/<name>.py and each module of a subpackage on the
    lines of its tvt/<package>/ row, so the layout matches the tree."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout"):].split("```")[1]
    rows, current = {}, None
    for line in block.splitlines():
        if line.startswith("tvt/") and "/" in line.split()[0][4:]:
            current = line.split()[0]
        elif not line.startswith(" "):
            current = None
        if current:
            rows[current] = rows.get(current, "") + " " + line
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py":
            continue
        if len(rel.parts) == 2:
            if f"tvt/{path.name}" not in block:
                missing.append(str(rel))
        elif not re.search(rf"\b{path.stem}\b", rows.get(f"tvt/{rel.parts[1]}/", "")):
            missing.append(str(rel))
    assert not missing, f"README's Layout does not name: {missing}"
