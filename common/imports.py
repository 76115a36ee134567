"""The project's modules and who imports whom, read from the source (nothing is imported or run).

* :func:`project_modules` - module name -> file, for the packages and top-level scripts of a checkout;
* :func:`imported_names` - every module name the import statements of a file refer to, those inside
  functions included;
* :func:`import_graph` - module -> the project modules it imports;
* :func:`reachable` - the modules a set of entry points imports, directly or not;
* :func:`code_digest` - a SHA-256 of what those modules compute: their syntax trees without docstrings
  (comments are not in a syntax tree), so an edit of words keeps it and an edit of code changes it.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGES = ("common", "data", "gan", "training", "eval", "tralgo", "experiments")
SCRIPTS = ("train.py", "evaluate.py")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path, packages=PACKAGES, scripts=SCRIPTS) -> dict[str, Path]:
    """Module name -> file, for every .py file of ``packages`` and the ``scripts`` under ``root``."""
    root = Path(root)
    files = [root / script for script in scripts if (root / script).is_file()]
    for package in packages:
        if (root / package).is_dir():
            files += sorted((root / package).rglob("*.py"))
    return {module_name(path, root): path for path in files}


def imported_names(path: Path, name: str) -> set[str]:
    """Every module name an import statement anywhere in the file (functions included) refers to:
    ``import a.b`` gives a.b; ``from a import b`` gives a.b and a (a.b counts only if it is a module)."""
    package = name if Path(path).name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), str(path))):
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


def import_graph(root: Path, packages=PACKAGES, scripts=SCRIPTS) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules(root, packages, scripts)
    return {name: {m for m in imported_names(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def reachable(graph: dict[str, set[str]], entries) -> set[str]:
    """``entries`` and every module they import, directly or through others."""
    seen, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(graph.get(name, ()))
    return seen


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def code_digest(root: Path, entries=("train", "evaluate")) -> str:
    """SHA-256 over the syntax trees, docstrings left out, of the modules ``entries`` reach (by name) and of
    their packages."""
    modules = project_modules(root)
    found = reachable(import_graph(root), entries)
    parents = {".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 1)}
    names = sorted((found | parents) & modules.keys())  # importing a module runs its packages' __init__ too
    digest = hashlib.sha256()
    for name in names:
        tree = _without_docstrings(ast.parse(modules[name].read_text(), str(modules[name])))
        digest.update(f"{name}\0{ast.dump(tree, include_attributes=False)}\0".encode())
    return digest.hexdigest()
