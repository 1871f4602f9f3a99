"""List the longest functions of a package (issue 14's "no function longer than about 80 lines").

    python tools/longest_functions.py [metajax] [--top 10]

Counts the lines from ``def`` to the function's last line, nested functions included in their
parent (a closure factory counts whole).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def longest(root: Path) -> list[tuple[int, str]]:
    """``[(lines, "path:line name")]`` for every function under ``root``, longest first."""
    out = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((node.end_lineno - node.lineno + 1, f"{f}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="metajax")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    rows = longest(Path(a.root))
    for n, where in rows[: a.top]:
        print(f"{n:5d}  {where}")
    print(f"{sum(n > 80 for n, _ in rows)} of {len(rows)} functions are longer than 80 lines")


if __name__ == "__main__":
    main()
