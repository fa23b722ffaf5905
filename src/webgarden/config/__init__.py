"""Configuration: an applicationHost.config-style XML file -> frozen, typed objects.

    load(path) -> ServerConfig            raises ConfigErrors (every problem in the file)
    loads(text, filename) -> ServerConfig
    check(path) -> list[ConfigError]      [] when the file loads
    diff(old, new) -> ConfigDiff          what a running server must start, stop, recycle
    summary(config) -> str                for `webgarden config check`

model.py holds the objects (schema and defaults declared on their fields), loader.py the
stages, DESIGN.md "Configuration" the file format.
"""

from webgarden.config.diff import ConfigDiff, PoolChange, diff
from webgarden.config.errors import ConfigError, ConfigErrors
from webgarden.config.loader import check, load, loads
from webgarden.config.summary import summary

__all__ = [
    "ConfigDiff", "ConfigError", "ConfigErrors", "PoolChange", "check", "diff", "load", "loads",
    "summary",
]
