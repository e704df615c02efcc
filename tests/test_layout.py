"""The package's layout: one sub-package per stage, imports pointing one way, a thin top level."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "spine_lightning"
ORDER = ["core", "data", "models", "inference", "evaluation", "training"]  # each may import those before it


def _imports(path: Path) -> set[str]:
    """The spine_lightning modules a file imports, at any depth (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spine_lightning"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("spine_lightning")}
    return found


def test_no_stage_imports_a_later_one():
    wrong = []
    for stage in ORDER:
        for path in (PACKAGE / stage).rglob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                other = parts[1] if len(parts) > 1 else None
                if other in ORDER and ORDER.index(other) > ORDER.index(stage):
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, wrong


def test_every_stage_says_what_it_may_import_and_the_top_level_is_thin():
    for stage in ORDER:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "import" in doc, stage
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 6, top
