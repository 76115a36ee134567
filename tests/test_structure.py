"""The limits the layout keeps, for every later change: data flows one way (no import cycle, not even
through imports inside functions), each room imports only the rooms below it, train.py and evaluate.py
stay short, no function outside the tests is over 50 lines, docs/architecture.md lists exactly the
modules there are, and every Markdown table of the README and docs/ has its header row."""
import ast
import re
from pathlib import Path

from common.imports import PACKAGES, SCRIPTS, import_graph, imported_names, project_modules

REPO = Path(__file__).resolve().parents[1]
# Who may import whom: a module imports only modules of a lower layer, or of its own package. tralgo is
# beside the others (torch alone); experiments drive the commands as processes and are imported by nothing.
LAYERS = {"common": 0, "tralgo": 0, "data": 1, "gan": 2, "training": 3, "eval": 3, "train": 4, "evaluate": 4,
          "experiments": 5}
MAX_LINES = {"train.py": 300, "evaluate.py": 120}
MAX_FUNCTION_LINES = 50
# The segmenters' architectures and file readers know nothing of scoring; the registry, the files and the
# segmenter training (which scores the real photos for its ground-truth row) are the ones that do.
SEGMENTER_SERVICES = {"eval.segmenters", "eval.segmenters.registry", "eval.segmenters.files",
                      "eval.segmenters.training"}


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


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module that is not of a lower layer nor of the importer's own package."""
    bad = []
    for name, targets in graph.items():
        room = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != room and LAYERS[other] >= LAYERS[room]:
                bad.append(f"{name} -> {target}")
    return sorted(bad)


def test_the_import_graph_has_no_cycle_and_flows_one_way():
    graph = import_graph(REPO)
    assert "eval.segmenters.registry" in graph and "train" in graph and "experiments.study.cli" in graph
    assert set(LAYERS) == {*PACKAGES, *(Path(script).stem for script in SCRIPTS)}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
    assert layer_violations(graph) == []


def test_the_checks_see_a_cycle_through_a_function_level_import_and_an_import_against_the_flow(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "gan").mkdir()
    (tmp_path / "eval" / "__init__.py").write_text("")
    (tmp_path / "gan" / "__init__.py").write_text("")
    (tmp_path / "eval" / "a.py").write_text("from eval import b\n")
    (tmp_path / "eval" / "b.py").write_text("def f():\n    from eval.a import g\n")
    (tmp_path / "gan" / "c.py").write_text("def f():\n    import eval.a\n")
    graph = import_graph(tmp_path)
    assert find_cycles(graph) == [["eval.a", "eval.b", "eval.a"]]
    assert layer_violations(graph) == ["gan.c -> eval.a"]


def test_bench_and_tools_import_nothing_from_tests_and_nothing_imports_experiments():
    for path in sorted((REPO / "bench").glob("*.py")) + sorted((REPO / "tools").glob("*.py")):
        names = imported_names(path, path.stem)
        assert not [n for n in names if n == "tests" or n.startswith("tests.")], path
    for name, targets in import_graph(REPO).items():
        if not name.startswith("experiments"):
            assert not [t for t in targets if t.startswith("experiments")], name


def test_the_segmenters_architectures_import_nothing_of_eval_but_its_error():
    for name, targets in import_graph(REPO).items():
        if name.startswith("eval.segmenters") and name not in SEGMENTER_SERVICES:
            outside = [t for t in targets if t.startswith("eval") and t != "eval"
                       and (not t.startswith("eval.segmenters") or t in SEGMENTER_SERVICES)]
            assert not outside, f"{name} imports {outside}"


def python_files_outside_tests() -> list[Path]:
    skipped = {"tests", ".venv", ".venv-verify-dpc", ".git", "build", "datasets", "checkpoints"}
    return sorted(p for p in REPO.rglob("*.py") if not skipped & set(p.relative_to(REPO).parts))


def long_functions(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - start + 1} lines)")
    return found


def test_the_commands_stay_short_and_no_function_outside_the_tests_is_over_50_lines(tmp_path):
    for script, limit in MAX_LINES.items():
        assert len((REPO / script).read_text().splitlines()) <= limit, script
    assert [f for path in python_files_outside_tests() for f in long_functions(path)] == []
    sample = tmp_path / "sample.py"
    sample.write_text("def fits():\n" + "    x = 1\n" * 49 + "\n\n@staticmethod\ndef too_long():\n" + "    x = 1\n" * 49)
    assert long_functions(sample, tmp_path) == ["sample.py:54 too_long (51 lines)"]


ARCHITECTURE = REPO / "docs" / "architecture.md"


def listed_modules(text: str) -> set[str]:
    """The module paths docs/architecture.md names: every `path/to/module.py` in backquotes (the tests'
    files, which it names in passing, aside)."""
    return {path for path in re.findall(r"`([\w/]+\.py)`", text) if not path.startswith("tests/")}


def test_architecture_md_lists_every_module_and_nothing_that_is_absent():
    modules = {path.relative_to(REPO).as_posix() for path in project_modules(REPO).values()}
    modules |= {p.relative_to(REPO).as_posix() for folder in ("bench", "tools") for p in (REPO / folder).glob("*.py")}
    listed = listed_modules(ARCHITECTURE.read_text())
    assert sorted(modules - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - modules) == [], "docs/architecture.md lists modules that do not exist"


def table_problems(text: str) -> list[str]:
    """Markdown tables without a header row and separator, or with rows of another number of cells."""
    problems, lines = [], text.splitlines()
    in_code = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code or not line.lstrip().startswith("|"):
            continue
        previous = lines[i - 1].lstrip() if i else ""
        if previous.startswith("|"):
            continue  # not the first line of its table
        block = [line]
        for following in lines[i + 1:]:
            if not following.lstrip().startswith("|"):
                break
            block.append(following)
        cells = [len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) for row in block]
        if len(block) < 2 or not re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*\|?", block[1].strip()):
            problems.append(f"line {i + 1}: a table without its header separator")
        elif len(set(cells)) != 1:
            problems.append(f"line {i + 1}: rows of {sorted(set(cells))} cells")
    return problems


def test_every_markdown_table_has_its_header_row_and_rows_of_its_width():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    assert [f"{page.relative_to(REPO)} {p}" for page in pages for p in table_problems(page.read_text())] == []
    assert table_problems("| a | b |\n|---|---:|\n| 1 | 2 |\n") == []
    assert table_problems("text\n| a | b |\n| 1 | 2 |\n") == ["line 2: a table without its header separator"]
    assert table_problems("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n") == ["line 1: rows of [2, 3] cells"]
    assert table_problems("| a |\n|---|\n\nparagraph\n| row after a break |\n") == [
        "line 5: a table without its header separator"]
