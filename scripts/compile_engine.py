"""Compile the matching engine (node/market/: MODULES below, unchanged) with mypyc: optional.

The pure-Python modules stay the reference and the fallback: Python imports a compiled module in
their place when its ``.so`` sits beside them, and the ``.py`` again once it is removed. Needs the
``fast`` extra (mypy, which ships mypyc) and a C compiler with Python's headers.

    .venv/bin/pip install -e '.[fast]' && .venv/bin/python scripts/compile_engine.py     # in place
    .venv/bin/python scripts/compile_engine.py --clean                                   # back to pure
    .venv/bin/python scripts/compile_engine.py --into DIR   # DIR/node/market: a compiled copy only
    .venv/bin/python scripts/compile_engine.py --into DIR --pure   # a pure copy (for the tests)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "node" / "market"
# Left pure: settlement.py (not on the matching path), reference.py (the naive baseline),
# protocol.py (a compiled Protocol is no longer one) and frozen.py (a native class cannot subclass list).
MODULES = ("order.py", "errors.py", "book.py", "validate.py", "stops.py", "views.py", "recovery.py", "engine.py")

SETUP = """
from setuptools import setup
from mypyc.build import mypycify
setup(name="pyexchange-engine", packages=[],
      ext_modules=mypycify([{paths}], opt_level="3", separate=True))
"""


def compiled_files(package: Path) -> list[Path]:
    return sorted(p for p in package.iterdir() if p.suffix in (".so", ".pyd"))


def copy_sources(dest: Path) -> Path:
    """A standalone tree DIR/node/market with the engine's sources (no other part of the node)."""
    pkg = dest / "node" / "market"
    pkg.mkdir(parents=True, exist_ok=True)
    (dest / "node" / "__init__.py").write_text("")
    for p in PACKAGE.glob("*.py"):
        shutil.copy2(p, pkg / p.name)
    return pkg


def build(tree: Path) -> list[Path]:
    """Compile ``tree``/node/market in place; returns the extension modules made."""
    paths = ", ".join(repr(f"node/market/{m}") for m in MODULES)
    with tempfile.TemporaryDirectory() as tmp:
        setup = Path(tmp) / "setup.py"
        setup.write_text(SETUP.format(paths=paths))
        env = {**os.environ, "PYTHONPATH": ""}
        cmd = [sys.executable, str(setup), "build_ext", "--inplace", "--build-temp", f"{tmp}/t", "--build-lib", f"{tmp}/l"]
        out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
            raise SystemExit(f"mypyc build failed (exit {out.returncode})")
    return compiled_files(tree / "node" / "market")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clean", action="store_true", help="remove the compiled modules from node/market")
    ap.add_argument("--into", type=Path, help="build a standalone copy under this directory instead")
    ap.add_argument("--pure", action="store_true", help="with --into: copy the sources, compile nothing")
    ns = ap.parse_args()
    if ns.clean:
        for p in compiled_files(PACKAGE):
            p.unlink()
            print(f"removed {p.relative_to(ROOT)}")
        return
    if ns.into is not None:
        pkg = copy_sources(ns.into)
        made = [] if ns.pure else build(ns.into)
        print(f"{pkg}: {'pure' if ns.pure else ', '.join(p.name for p in made)}")
        return
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise SystemExit("mypyc is missing: .venv/bin/pip install -e '.[fast]'") from None
    with tempfile.TemporaryDirectory() as tmp:
        made = build(Path(tmp)) if copy_sources(Path(tmp)) else []
        for p in compiled_files(PACKAGE):
            p.unlink()
        for p in made:
            shutil.copy2(p, PACKAGE / p.name)
            print(f"built node/market/{p.name}")


if __name__ == "__main__":
    main()
