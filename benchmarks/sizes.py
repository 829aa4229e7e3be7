"""The largest modules and the longest functions of the package, for the Design page's
"Sizes" section: `python benchmarks/sizes.py` (from the project root)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "src" / "seq2seq"


def main(count: int = 8) -> None:
    modules, functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = str(path.relative_to(PACKAGE.parent))
        modules.append((len(source.splitlines()), name))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                functions.append((lines, f"{name}:{node.lineno} {node.name}"))
    print(f"{len(modules)} modules, {sum(n for n, _ in modules)} lines")
    for title, rows in (("largest modules", modules), ("longest functions", functions)):
        print(title)
        for lines, where in sorted(rows, reverse=True)[:count]:
            print(f"  {lines:5d}  {where}")


if __name__ == "__main__":
    main()
