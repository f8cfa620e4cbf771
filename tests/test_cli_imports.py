"""The command line is a thin shell over the public API: no module under ``cli/`` imports a
``_``-prefixed module (or name) from outside ``cli/``."""

import ast
import pathlib

import pytest

import composed_lifts.cli

CLI = pathlib.Path(composed_lifts.cli.__file__).parent


def private_imports(path: pathlib.Path) -> list[str]:
    """``package.module:name`` for each import in ``path`` that reaches a private module or
    name of composed_lifts outside ``cli/``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from ._x import ... : inside cli/
                continue
            if node.level == 0:
                if not (node.module or "").startswith("composed_lifts"):
                    continue
                parts = (node.module or "").split(".")[1:]
            else:  # level 2 is composed_lifts itself
                assert node.level == 2, (path.name, node.lineno)
                parts = (node.module or "").split(".") if node.module else []
            if parts[:1] == ["cli"]:
                continue
            names = [alias.name for alias in node.names]
            if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
                found.append(f"{'.'.join(['composed_lifts', *parts])}:{','.join(names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "composed_lifts" and parts[1:2] != ["cli"]:
                    if any(p.startswith("_") for p in parts[1:]):
                        found.append(alias.name)
    return found


MODULES = sorted(p.name for p in CLI.glob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_cli_module_imports_only_public_names(name):
    assert private_imports(CLI / name) == []


def test_the_check_finds_private_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from .._atomic import x\nfrom ..checkpoint._orbax import y\nfrom .. import _z\n"
        "import composed_lifts._forward\nfrom ._files import ok\nfrom ..files import fine\n"
        "def f():\n    from .._tune import DOT_BACKENDS\n"
    )
    assert private_imports(source) == [
        "composed_lifts._atomic:x",
        "composed_lifts.checkpoint._orbax:y",
        "composed_lifts:_z",
        "composed_lifts._forward",
        "composed_lifts._tune:DOT_BACKENDS",
    ]
