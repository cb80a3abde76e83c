"""Files that ship with the code but live at the top of the repository (`templates/`, the demo
`cluster.toml`).

An installed package carries them in `node/_bundled/` (setup.py copies them at build time); a source
checkout or an editable install reads them from the repository. The bundled copy is tried first, so
an installed node never picks up a stray `templates/` beside `site-packages`.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PLACES = (PACKAGE / "_bundled", PACKAGE.parent)


def resource(name: str) -> Path | None:
    """The shipped file or folder `name`, or None when neither place has it."""
    for base in PLACES:
        path = base / name
        if path.exists():
            return path
    return None


def templates_dir() -> Path:
    path = resource("templates")
    if path is None:
        raise RuntimeError(f"the page templates are missing (looked in {', '.join(str(p) for p in PLACES)})")
    return path
