"""Reading cluster.toml's tables: the typed getters every table's parser uses, and the memory of
which keys were asked for, so that a key nobody asked for (a typo) is refused by name and table."""

from __future__ import annotations

from typing import Any

from node.errors import InvalidParameter
from node.money import parse_units


class ConfigError(Exception):
    """The configuration is wrong; the message names the field."""


def known_keys(table: dict[str, Any], path: str, keys: Any) -> None:
    """A misspelt key would silently leave a setting at its default: refuse it by name and table."""
    for key in table:
        if key not in keys:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown key in [{path or 'top level'}] (known: {', '.join(sorted(keys))})")


class _Read(dict[str, Any]):
    """A table of the file that remembers which keys the parser asked for (present or not) and
    whether it went through all of them (a table of named entries: currencies, markets, …). After
    parsing, a key nobody asked for is a typo: the keys asked for are the table's known keys, so
    this stays true whatever a parser adds, without a second list to keep in step."""

    def __init__(self, data: dict[str, Any], path: str) -> None:
        super().__init__({k: _read(v, f"{path}.{k}" if path else k) for k, v in data.items()})
        self.path = path
        self.asked: set[str] = set()
        self.all_read = False

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def items(self) -> Any:
        self.all_read = True
        return super().items()

    def __iter__(self) -> Any:
        self.all_read = True
        return super().__iter__()

    def unread(self) -> list[tuple[str, str, list[str]]]:
        """(path of the key, table, known keys) of every key nobody asked for, here and below."""
        out = [] if self.all_read else [(f"{self.path}.{k}" if self.path else k, self.path or "top level", sorted(self.asked))
                                         for k in super().keys() if k not in self.asked]
        for v in super().values():
            if isinstance(v, _Read):
                out += v.unread()
        return out


def _read(value: Any, path: str) -> Any:
    return _Read(value, path) if isinstance(value, dict) and not isinstance(value, _Read) else value


def _refuse_unread(data: _Read) -> None:
    unread = sorted(data.unread())
    if unread:
        where, table, known = unread[0]
        raise ConfigError(f"{where}: unknown key in [{table}] (known: {', '.join(known) or 'none'})")


def _get(table: dict[str, Any], key: str, path: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    where = f"{path}.{key}" if path else key  # top-level tables have no prefix: "currencies", not ".currencies"
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing")
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}: expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return {"str": "a string", "int": "an integer", "list": "a list", "dict": "a table"}.get(kind.__name__, kind.__name__)


def _int_range(table: dict[str, Any], key: str, path: str, lo: int, hi: int, default: Any = ...) -> int:
    v = _get(table, key, path, int, default)
    if not lo <= v <= hi:
        raise ConfigError(f"{path}.{key}: must be between {lo} and {hi}, got {v}")
    return int(v)


def _units(table: dict[str, Any], key: str, path: str, decimals: int, default: str, allow_zero: bool) -> int:
    raw = _get(table, key, path, str, default)
    try:
        return parse_units(raw, decimals, f"{path}.{key}", allow_zero=allow_zero)
    except InvalidParameter as e:
        raise ConfigError(f"{path}.{key}: {e.message.split(' ', 1)[1] if ' ' in e.message else e.message}") from None


def _strings(table: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    values = _get(table, key, path, list, [])
    if not all(isinstance(v, str) and v.strip() and v.isprintable() for v in values):
        raise ConfigError(f"{path}.{key}: expected a list of non-empty strings")
    return tuple(values)
