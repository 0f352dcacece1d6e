"""The package is a one-way stack of stages: each imports only from those below it.

Every import of a Spike module is checked, at module level or inside a function
(an import moved into a function still ties the two stages together).
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "spike"

LAYERS = [
    ("spike.version", "spike.exceptions", "spike.config", "spike.sysinfo"),
    ("spike.builder",),
    ("spike.plan",),
    ("spike.comm",),
    ("spike.runtime",),
    ("spike.client",),
    ("spike.cluster",),
    ("spike.simulator",),
    ("spike.tools",),
    ("spike.testing", "spike"),
]
"""Bottom to top. A module may import its own layer's modules and any below."""


def layer_of(module):
    """Index in `LAYERS` of the longest prefix naming ``module``'s layer."""
    best = None
    for index, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > len(best[1]):
                    best = (index, name)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py")
    return best


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts), path.name == "__init__.py"


def spike_imports(path):
    """``[(line, imported module)]`` of every Spike module ``path`` imports."""
    module, is_package = module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from spike.comm import wire` imports the module spike.comm.wire
            for alias in node.names:
                sub = PACKAGE.parent.joinpath(*f"{target}.{alias.name}".split("."))
                if sub.with_suffix(".py").exists() or sub.is_dir():
                    found.append((node.lineno, f"{target}.{alias.name}"))
                else:
                    found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "spike" or name.startswith("spike.")]


def violations():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, _ = module_name(path)
        own, own_name = layer_of(module)
        for line, target in spike_imports(path):
            if target == "spike" and module != "spike":
                found.append(f"{module}:{line} imports the top package 'spike'")
                continue
            theirs, their_name = layer_of(target)
            if theirs > own:
                found.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {own_name} imports "
                    f"{target}, which is above it ({their_name})"
                )
    return found


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path)[0])


def test_imports_only_go_down():
    found = violations()
    assert not found, "imports that go up the stack:\n" + "\n".join(found)


def module_cycles():
    """Cycles among Spike's modules, counting imports inside functions (each as a
    list of module names)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        module, _ = module_name(path)
        graph[module] = {
            target for _, target in spike_imports(path) if target != module
        }
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # a package's __init__ importing its own modules is not a cycle of stages
    return [c for c in cycles if not all(m.startswith(c[0] + ".") for m in c[1:-1])]


def test_no_module_imports_itself_back():
    cycles = module_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """A module of ``spike.builder`` importing ``spike.client`` is reported."""
    fake = tmp_path / "spike"
    (fake / "builder").mkdir(parents=True)
    (fake / "client").mkdir()
    for name in ("__init__.py", "builder/__init__.py", "client/__init__.py", "client/pool.py"):
        (fake / name).write_text("")
    (fake / "builder" / "bad.py").write_text("def f():\n    from spike.client import pool\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    found = violations()
    assert len(found) == 1 and "spike.builder imports spike.client.pool" in found[0]


def test_the_check_sees_a_cycle(tmp_path, monkeypatch):
    """Two modules of one stage importing each other, one inside a function."""
    fake = tmp_path / "spike"
    (fake / "builder").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "builder" / "__init__.py").write_text("")
    (fake / "builder" / "a.py").write_text("from spike.builder import b\n")
    (fake / "builder" / "b.py").write_text("def f():\n    from spike.builder.a import g\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert module_cycles() == [["spike.builder.a", "spike.builder.b", "spike.builder.a"]]
