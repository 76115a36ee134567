"""The project's modules import each other without a cycle, counting imports placed inside functions;
the scorers import nothing of eval but its error; bench/ uses no helper of tests/."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "data", "gan", "eval", "tralgo")
SCRIPTS = ("train.py", "evaluate.py")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = REPO) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages and the scripts."""
    files = [root / script for script in SCRIPTS if (root / script).is_file()]
    for package in PACKAGES:
        if (root / package).is_dir():
            files += sorted((root / package).rglob("*.py"))
    return {module_name(path, root): path for path in files}


def imported_names(path: Path, name: str) -> set[str]:
    """Every module name an import statement anywhere in the file (functions included) refers to:
    ``import a.b`` gives a.b; ``from a import b`` gives a.b and a (a.b counts only if it is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules(root)
    return {name: {m for m in imported_names(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge met by a depth-first search: [a, b, ..., a]."""
    state, stack, cycles = {}, [], []   # state: 1 on the stack, 2 done

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "eval.segmenters" in graph and "train" in graph  # the walk found the project
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_find_cycles_sees_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "__init__.py").write_text("")
    (tmp_path / "eval" / "a.py").write_text("from eval import b\n")
    (tmp_path / "eval" / "b.py").write_text("def f():\n    from eval.a import g\n")
    assert find_cycles(import_graph(tmp_path)) == [["eval.a", "eval.b", "eval.a"]]


def test_bench_imports_nothing_from_tests():
    for path in sorted((REPO / "bench").glob("*.py")):
        names = imported_names(path, path.stem)
        assert not [n for n in names if n == "tests" or n.startswith("tests.")], path


def test_the_scorers_import_nothing_of_eval_but_its_error():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("eval.scorers"):
            outside = [t for t in targets if t.startswith("eval") and t != "eval" and not t.startswith("eval.scorers")]
            assert not outside, f"{name} imports {outside}"
