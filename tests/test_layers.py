"""The package's imports flow one way (docs/architecture.md): each module imports only its own
layer or lower ones, the storage format and the backends never import each other, nothing outside
``cottoncandy/fuse/`` imports it, and only the S3 backend modules import boto3 or obstore.

Every import is read with :mod:`ast`, also those inside functions and ``TYPE_CHECKING`` blocks:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cottoncandy"

#: Layers from the bottom up; a module belongs to the first entry that names it or its package.
LAYERS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (0, "foundation", ("cottoncandy.errors", "cottoncandy.paths", "cottoncandy.usermeta")),
    (1, "config", ("cottoncandy.config",)),
    (2, "format", ("cottoncandy.format",)),
    (2, "backends", ("cottoncandy.backends",)),
    (3, "transfer", ("cottoncandy.transfer",)),
    (4, "extensions", ("cottoncandy.extensions",)),
    (5, "facade", ("cottoncandy.interface", "cottoncandy")),
    (6, "fuse", ("cottoncandy.fuse",)),
)
#: Layers of one level that must not import each other.
INDEPENDENT = {frozenset({"format", "backends"})}
#: Third-party clients allowed only in these modules (the S3 backend).
S3_CLIENTS = ("boto3", "botocore", "obstore")
S3_MODULES = "cottoncandy.backends.s3"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[int, str]:
    for level, name, roots in LAYERS:
        if any(module == root or (root != "cottoncandy" and module.startswith(root + ".")) for root in roots):
            return level, name
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py "
                         "and to docs/architecture.md")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``; ``from X import name`` yields
    ``X.name`` when that is a module of the package, else ``X``."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or \
                    (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").is_file()
                found.append((node.lineno, sub if is_module else target))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_flow_one_way(path):
    module = module_name(path)
    level, layer = layer_of(module)
    wrong = []
    for line, target in imports_of(path):
        top = target.split(".")[0]
        if top in S3_CLIENTS and not module.startswith(S3_MODULES):
            wrong.append(f"line {line}: {target} (only the S3 backend modules may use {top})")
        if top != "cottoncandy":
            continue
        their_level, their_layer = layer_of(target)
        if their_layer == "fuse" and layer != "fuse":
            wrong.append(f"line {line}: {target} (nothing outside cottoncandy/fuse/ imports it)")
        elif their_level > level:
            wrong.append(f"line {line}: {target} ({their_layer}) is above {layer}")
        elif frozenset({layer, their_layer}) in INDEPENDENT:
            wrong.append(f"line {line}: {target} ({their_layer}) and {layer} must not import each other")
    assert not wrong, f"{module} ({layer}):\n" + "\n".join(wrong)


def test_the_walk_sees_every_kind_of_import():
    """The checker itself: relative, lazy and TYPE_CHECKING imports are all found."""
    path = PACKAGE / "extensions" / "groups.py"
    targets = {t for _, t in imports_of(path)}
    assert {"cottoncandy.transfer.arrayio", "cottoncandy.extensions.dask_arrays",
            "cottoncandy.format.manifests", "cottoncandy.errors"} <= targets
    lazy = {t for _, t in imports_of(PACKAGE / "backends" / "connect.py")}
    assert "cottoncandy.backends.s3" in lazy  # imported inside make_backend
    assert layer_of("cottoncandy") == (5, "facade") and layer_of("cottoncandy.fuse.cli") == (6, "fuse")
