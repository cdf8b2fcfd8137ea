"""The configuration this process runs with, read-only.

Tasker's configuration is layered (see ``docs/configuration.md``): built-in defaults <
``base/*.toml`` < ``environments/<TASKER_ENV>/*.toml`` < ``TASKER_<SECTION>__<KEY>``
environment variables < explicit arguments in code. The tree's root is ``TASKER_CONFIG_ROOT``,
else ``./config/tasker`` when it exists. :func:`~tasker_core.connect` and
:class:`~tasker_core.Worker` read it the way the ``tasker`` CLI does; :func:`config` shows it::

    for value in tasker_core.config().values:
        print(value.key, value.value, value.origin)   # worker.concurrency 3 /etc/…/worker.toml
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, List, Optional

from . import _native

__all__ = ["config", "Configuration", "ConfigValue"]


@dataclass(frozen=True)
class ConfigValue:
    """One key's value and where it came from (what ``tasker config show`` prints)."""

    key: str
    """``section.key``, e.g. ``worker.concurrency``."""
    value: Any
    """The value (secrets redacted: a database URL is shown without its credentials)."""
    origin: str
    """``"default"``, ``"file"`` or ``"env"``."""
    source: Optional[str] = None
    """The file's path (``origin == "file"``) or the variable's name (``origin == "env"``)."""


@dataclass(frozen=True)
class Configuration:
    """The merged configuration: every key that has a value, with its origin."""

    env: str
    """``TASKER_ENV`` (default ``development``)."""
    root: Optional[str]
    """The tree's root, or ``None`` when only the built-in defaults apply."""
    files: List[str]
    """The files read, in the order they were merged."""
    values: List[ConfigValue]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``section.key``), or ``default`` when it has none."""
        for v in self.values:
            if v.key == key:
                return v.value
        return default

    def origin(self, key: str) -> Optional[ConfigValue]:
        """The :class:`ConfigValue` of ``key``, or ``None`` when it has no value."""
        return next((v for v in self.values if v.key == key), None)


def config() -> Configuration:
    """Loads the configuration this process runs with (files and environment variables as they
    are now).

    Raises:
        ConfigurationError: the configuration is invalid (each problem names its file or
            variable and key).
    """
    raw = json.loads(_native.load_config())
    values = []
    for v in raw["values"]:
        origin = v["origin"]
        kind = origin["kind"]
        source = origin.get("path") if kind == "file" else origin.get("var") if kind == "env" else None
        values.append(ConfigValue(v["key"], v["value"], kind, source))
    return Configuration(raw["env"], raw["root"], list(raw["files"]), values)
