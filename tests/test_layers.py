"""The import contracts of pyproject.toml cover the whole package.

`lint-imports` (run by scripts/test.sh) checks only the modules a contract names: a new top-level
module left out of the layers could import anything. This makes adding it a decision.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_top_level_module_has_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers" and c.get("containers") == ["node"])
    named = {part.strip().strip("()") for layer in layers["layers"] for part in layer.replace("|", ":").split(":")}
    package = ROOT / "node"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules - named == set(), "give these modules a layer in [tool.importlinter] (docs/architecture.md)"
    assert named - modules == set(), "these layers name modules that are gone"
