"""Declarative config: each setting's variable, default, type, bounds and help, said once.

A service's config used to write every default twice (the dataclass field and the
``env_number(...)`` call). Here a field says it all::

    @dataclass(frozen=True)
    class RuqiConfig(Config):
        poll_interval: float = setting("RUQI_POLL_INTERVAL", 0.2, min=0.01,
                                       help="seconds between engine polls")

``RuqiConfig.from_env(env)`` parses and checks every field (a bad value raises
:class:`SettingsError` naming the variable, in the messages ``env_number`` / ``env_flag``
always gave); ``describe(env)`` lists each setting with its value and where it came from,
for ``butterfly config``. The type comes from the annotation: ``int``, ``float``,
``bool``, ``str`` and ``str | None`` (blank: None).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit, urlunsplit


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def _int(name: str, raw: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(f"{name}={raw!r}: expected a number in {bound}")
    return value


def _float(name: str, raw: str, minimum: float, maximum: float = math.inf) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        bound = f">= {minimum:g}" if maximum == math.inf else f"in {minimum:g}..{maximum:g}"
        raise SettingsError(f"{name}={raw!r}: expected a number {bound}")
    return value

#: The key of a field's :class:`Setting` in ``dataclasses.field(metadata=...)``.
META = "butterfly_setting"

MASK = "****"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one field declares: its variable and how a raw value becomes the field's."""

    env: str
    help: str = ""
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    #: Lower-case a text value before checking it against ``choices`` (and keeping it).
    lower: bool = False
    #: Text shorter than this (when given) is refused: tokens, passwords.
    min_len: int = 0
    #: Strip blanks around a text value (passwords keep theirs).
    strip: bool = True
    #: The default when unset if it depends on the environment (``BUTTERFLY_ENV``...).
    env_default: Callable[[Mapping[str, str]], Any] | None = None
    #: Further check of the parsed value: None when fine, else what is wrong.
    check: Callable[[Any], str | None] | None = None
    #: ``int`` only: a whole number (``"1.5"`` refused) rather than a number cut to int.
    whole: bool = False
    #: Parse the (stripped) text yourself: ``parse(variable, raw)``, SettingsError naming
    #: the variable; for types the annotation cannot say (URLs, networks, JSON...).
    parse: Callable[[str, str], Any] | None = None


def setting(env: str, default: Any = None, *, min: float | None = None,
            max: float | None = None, help: str = "",
            secret: bool = False, choices: tuple[str, ...] = (), lower: bool = False,
            min_len: int = 0, strip: bool = True,
            env_default: Callable[[Mapping[str, str]], Any] | None = None,
            check: Callable[[Any], str | None] | None = None, whole: bool = False,
            parse: Callable[[str, str], Any] | None = None) -> Any:
    """A config field read from variable ``env`` (see :class:`Setting` for the options)."""
    spec = Setting(env=env, help=help, secret=secret, minimum=min, maximum=max,
                   choices=choices, lower=lower, min_len=min_len, strip=strip,
                   env_default=env_default, check=check, whole=whole, parse=parse)
    return dataclasses.field(default=default, metadata={META: spec}, repr=not secret)


class SettingInfo(NamedTuple):
    """One line of ``describe``: the variable, its value, ``env`` or ``default``."""

    env: str
    value: Any
    source: str
    help: str
    secret: bool

    def shown(self) -> str:
        """The value as printed: secrets that are set become ``****``."""
        value = self.value
        if self.secret and value not in (None, "", ()):
            return MASK
        if value is None:
            return ""
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        if isinstance(value, Mapping):
            return json.dumps(value, sort_keys=True)
        return mask_url(value) if isinstance(value, str) and "://" in value else str(value)


def _kind(annotation: Any) -> type:
    """``int``, ``float``, ``bool``, ``str`` or ``Path`` of an annotation (``X | None``: X)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported setting type {annotation!r}")
        annotation = args[0]
    if annotation not in (int, float, bool, str, Path):
        raise TypeError(f"unsupported setting type {annotation!r}")
    return annotation  # type: ignore[no-any-return]


def _choices(values: tuple[str, ...]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _parse(spec: Setting, kind: type, raw: str) -> Any:
    """The value of a set variable (``raw`` not blank), or SettingsError naming it."""
    name = spec.env
    if spec.parse is not None:
        return spec.parse(name, raw.strip())
    if kind is bool:
        return _bool(name, raw.strip())
    if kind is int and spec.whole:
        return _int(name, raw.strip(), int(spec.minimum or 0),
                    None if spec.maximum is None else int(spec.maximum))
    if kind in (int, float):
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        number = _float(name, raw.strip(), low, high)
        return int(number) if kind is int else number
    text = raw.strip() if spec.strip else raw
    if spec.lower:
        text = text.lower()
    if spec.choices and text not in spec.choices:
        raise SettingsError(f"{name}={text!r}: expected {_choices(spec.choices)}")
    if spec.min_len and len(text) < spec.min_len:
        raise SettingsError(f"{name}: use at least {spec.min_len} characters")
    return Path(text) if kind is Path else text


class Config:
    """Base of a declared config: a (frozen) dataclass whose fields are :func:`setting`."""

    @classmethod
    def settings(cls) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
        """Each declared field with its :class:`Setting`, in declaration order."""
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            spec = f.metadata.get(META)
            if isinstance(spec, Setting):
                yield f, spec

    @classmethod
    def _read(cls, env: Mapping[str, str], defaults: Mapping[str, Any] | None = None,
              ) -> Iterator[tuple[str, Setting, Any, str]]:
        """(field name, setting, value, source) of every field, checked; ``defaults``
        replaces field defaults by field name (a service's own port...)."""
        hints = typing.get_type_hints(cls)
        for f, spec in cls.settings():
            kind = str if spec.parse is not None else _kind(hints[f.name])
            raw = env.get(spec.env)
            if raw is not None and (raw.strip() if spec.strip else raw) != "":
                value, source = _parse(spec, kind, raw), "env"
            else:
                if defaults and f.name in defaults:
                    value = defaults[f.name]
                else:
                    value = spec.env_default(env) if spec.env_default else f.default
                source = "default"
            if spec.check is not None and value is not None:
                problem = spec.check(value)
                if problem:
                    raise SettingsError(f"{spec.env}={value!r}: {problem}")
            yield f.name, spec, value, source

    @classmethod
    def values(cls, env: Mapping[str, str],
               defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{field: value}`` of every declared field, parsed and checked."""
        return {name: value for name, _, value, _ in cls._read(env, defaults)}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Parse and check every declared variable; SettingsError names a bad one."""
        config = cls(**cls.values(env))
        config.validate()
        return config

    @classmethod
    def describe(cls, env: Mapping[str, str],
                 defaults: Mapping[str, Any] | None = None) -> list[SettingInfo]:
        """Every setting with its value and source (``env`` / ``default``), for people."""
        return [SettingInfo(spec.env, value, source, spec.help, spec.secret)
                for _, spec, value, source in cls._read(env, defaults)]

    def validate(self) -> None:
        """Checks across fields (one's bound is another): raise SettingsError naming them."""


def mask_url(url: str) -> str:
    """``redis://:pw@host`` -> ``redis://:****@host``: a URL's password is a secret too."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
