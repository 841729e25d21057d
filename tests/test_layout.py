"""The package's shape as the README's Layout states it: imports point one way through the
pipeline's stages, every module has a stage, and the GAN trainer uses only the public API.

Static (the source is parsed, nothing is imported), so it costs milliseconds."""

from __future__ import annotations

import ast
import pathlib

import fidkit

ROOT = pathlib.Path(fidkit.__file__).parent

#: the Layout's flow, stage by stage: a module may import modules of earlier stages only, and
#: of its own stage only inside the encoders stage (the encoders package adapts the network,
#: preprocessing and weights modules beside it)
STAGES = (
    {"errors", "_io", "_tiff", "__version__"},  # used everywhere
    {"_args"},  # the public functions' argument checks, on errors only
    {"sources"},
    {"inception", "preprocess", "weights", "encoders", "encoders._image", "encoders._linear", "encoders.weights",
     "encoders.inception", "encoders.dinov2", "encoders.clip", "encoders.Encoder", "encoders.Preprocess"},
    {"pipeline"},
    {"stats"},
    {"frechet"},
    {"registry", "scores", "distances"},
    {"api"},
    {"metric", "distributed"},
    {"cli"},
    {"__main__"},
)
SAME_STAGE_OK = {3}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _internal_imports(path: pathlib.Path) -> set:
    """fidkit modules (dotted, relative to the package) that ``path`` imports."""
    package = list(path.relative_to(ROOT).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                out.add(".".join(base + node.module.split(".")))
            else:
                out.update(".".join(base + [a.name]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fidkit":
            out.add(node.module[len("fidkit."):] if "." in node.module else "")
        elif isinstance(node, ast.Import):
            out.update(a.name[len("fidkit."):] for a in node.names if a.name.startswith("fidkit."))
    return out


def _stage(name: str) -> int | None:
    return next((i for i, s in enumerate(STAGES) if name in s), None)


def test_imports_point_one_way_through_the_stages():
    core = [p for p in sorted(ROOT.rglob("*.py")) if "ttur" not in p.relative_to(ROOT).parts]
    unplaced, backwards = [], []
    for path in core:
        name = _module_name(path)
        if name == "":  # fidkit/__init__.py: the public API gathers from every stage
            continue
        mine = _stage(name)
        if mine is None:
            unplaced.append(name)
            continue
        for dep in _internal_imports(path):
            theirs = _stage(dep)
            if theirs is None:
                unplaced.append(f"{dep} (imported by {name})")
            elif theirs > mine or (theirs == mine and mine not in SAME_STAGE_OK and dep != name):
                backwards.append(f"{name} imports {dep}")
    assert not unplaced, f"modules without a stage in the Layout (add them to README and STAGES): {unplaced}"
    assert not backwards, f"imports against the flow: {backwards}"


def test_the_trainer_uses_only_the_public_api():
    """fidkit.ttur is an example user of fidkit: it imports only ``fidkit`` itself and uses only
    names in ``fidkit.__all__`` (besides its own package)."""
    public = set(fidkit.__all__) | {"ttur"}
    used, private = set(), []
    for path in sorted((ROOT / "ttur").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level > 1 or (node.module or "").startswith("fidkit.")
                                                     and not (node.module or "").startswith("fidkit.ttur")):
                private.append(f"{path.name}: from {'.' * node.level}{node.module or ''} import ...")
            elif isinstance(node, ast.Import):
                private.extend(f"{path.name}: import {a.name}" for a in node.names
                               if a.name.startswith("fidkit.") and not a.name.startswith("fidkit.ttur"))
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "fidkit"):
                used.add(node.attr)
    assert not private, f"the trainer reaches past the public API: {private}"
    assert used and used <= public, f"names outside fidkit.__all__: {sorted(used - public)}"
