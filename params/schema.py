"""A small typed-settings validator: dataclasses describe the settings, `parse` checks a dict.

Every error is a `ParamsError` whose message starts with the dotted key it is about
(``clas_system.serving.batch_size: ...``) and says what would be accepted.
"""
import dataclasses
import difflib
import typing
from collections.abc import Mapping


class ParamsError(ValueError):
    """A setting is unknown or has a bad value; the message names the key."""


def setting(default, *, choices=None, min=None, max=None, doc=""):
    """A dataclass field with validation rules and a one-line description (rendered into docs/settings.md)."""
    meta = {"choices": choices, "min": min, "max": max, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse(cls, data, where):
    """Build dataclass `cls` from the mapping `data`, checking every key and value."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ParamsError(unknown_key_message(where, key, known))
    hints = typing.get_type_hints(cls)
    values = {name: coerce(hints[name], data[name], f"{where}.{name}", known[name].metadata)
              for name in known if name in data}
    return cls(**values)


def unknown_key_message(where, key, known):
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}.{key}: unknown setting{hint}; allowed: {', '.join(sorted(known))}"


def coerce(hint, value, where, rules=None):
    """Check `value` against type `hint` and the field's rules; return it in its typed form."""
    rules = rules or {}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, where, rules)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else typing.Any
        return tuple(coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is typing.Any:
        return value
    checked = check_scalar(hint, value, where)
    check_rules(checked, where, rules)
    return checked


def check_scalar(hint, value, where):
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamsError(f"{where}: expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ParamsError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ParamsError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"{where}: the schema uses an unsupported type {hint!r}")


def check_rules(value, where, rules):
    choices = rules.get("choices")
    if choices is not None and value not in choices:
        raise ParamsError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, choices))}")
    low, high = rules.get("min"), rules.get("max")
    if low is not None and value < low:
        raise ParamsError(f"{where}: {value!r} is too small; the minimum is {low}")
    if high is not None and value > high:
        raise ParamsError(f"{where}: {value!r} is too large; the maximum is {high}")


def section_type(hint):
    """The settings dataclass a field holds (also inside Optional), or None for a plain value."""
    if typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = inner[0] if len(inner) == 1 else None
    return hint if dataclasses.is_dataclass(hint) else None


def describe(cls, prefix=""):
    """Rows of (key, default, rule, doc) for every setting, nested sections flattened; a section
    that may be None gets a row of its own before its keys."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        section = section_type(hints[f.name])
        if section is not None:
            if section is not hints[f.name]:
                rows.append((key, {}, "a section, or None", f.metadata.get("doc", "")))
            rows.extend(describe(section, key + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meta = f.metadata
        rule = ", ".join(filter(None, [
            f"one of {', '.join(map(str, meta['choices']))}" if meta.get("choices") else "",
            f">= {meta['min']}" if meta.get("min") is not None else "",
            f"<= {meta['max']}" if meta.get("max") is not None else "",
        ]))
        rows.append((key, default, rule, meta.get("doc", "")))
    return rows
