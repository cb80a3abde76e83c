"""Build hook (the metadata is in pyproject.toml).

`templates/` and `cluster.toml` stay at the top of the repository, where the design keeps them, but
an installed node needs them wherever it runs: the build copies them into the package as
`node/_bundled/`, and `node/resources.py` looks there first, then in a source checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent
BUNDLED = ("templates", "cluster.toml")


class BuildWithBundled(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, where resources.py finds them
        target = Path(self.build_lib) / "node" / "_bundled"
        shutil.rmtree(target, ignore_errors=True)  # a template deleted since the last build goes too
        for name in BUNDLED:
            src, dst = TOP / name, target / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithBundled})
