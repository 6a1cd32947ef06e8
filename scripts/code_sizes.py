#!/usr/bin/env python3
"""Print the largest functions and classes of the package, in lines.

Used for the figures of a refactoring note: run it before and after (for
example on a ``git worktree`` of the earlier commit) and compare.

Usage: ``python scripts/code_sizes.py [--top N] [ROOT]`` (default root:
the package directory of this checkout).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

_DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "python" / "lsst" / "ctrl" / "bps" / "panda"


def sizes(root: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Return (lines, qualified name) of every function and class below a root.

    Parameters
    ----------
    root : `pathlib.Path`
        Directory of Python files.

    Returns
    -------
    functions, classes : `list` [`tuple` [`int`, `str`]]
        Sizes (``end_lineno - lineno + 1``, decorators excluded) and names
        ``<relative path>:<qualified name>``.
    """
    functions: list[tuple[int, str]] = []
    classes: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                size = (child.end_lineno or child.lineno) - child.lineno + 1
                target = classes if isinstance(child, ast.ClassDef) else functions
                target.append((size, f"{where}:{name}"))
                visit(child, f"{name}.", where)

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), "", str(path.relative_to(root)))
    return sorted(functions, reverse=True), sorted(classes, reverse=True)


def main() -> None:
    """Print the largest functions and classes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=_DEFAULT_ROOT)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    functions, classes = sizes(args.root)
    for title, rows in (("functions", functions), ("classes", classes)):
        print(f"largest {title}:")
        for size, name in rows[: args.top]:
            print(f"  {size:5d}  {name}")


if __name__ == "__main__":
    main()
