"""Configuration errors: always the fault of whoever wrote the file, never the server's.

One `ConfigError` is one problem, located as precisely as the file allows:

    shop.config:12: <add name="Shop Pool"> attribute queueLength="5": must be between 10 and 65535

`ConfigErrors` (a `ConfigError` too, so one `except ConfigError` catches both) carries every
problem found in a file: the loader does not stop at the first.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(Exception):
    """One problem in a configuration file: where it is, and why it is wrong."""

    def __init__(
        self,
        reason: str,
        *,
        filename: str = "<string>",
        line: int | None = None,
        element: str | None = None,
        attribute: str | None = None,
        value: str | None = None,
    ) -> None:
        self.reason = reason
        self.filename = filename
        self.line = line
        self.element = element  # as written: `add name="Shop Pool"`
        self.attribute = attribute
        self.value = value
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.filename if self.line is None else f"{self.filename}:{self.line}"
        what = f"<{self.element}>" if self.element else ""
        if self.attribute is not None:
            shown = "" if self.value is None else f'="{self.value}"'
            what += f"{' ' if what else ''}attribute {self.attribute}{shown}"
        return f"{where}: {what}: {self.reason}" if what else f"{where}: {self.reason}"

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only arguments: pickle by hand
        return (_rebuild, (self.reason, self.filename, self.line, self.element, self.attribute,
                           self.value))


def _rebuild(reason: str, filename: str, line: int | None, element: str | None,
             attribute: str | None, value: str | None) -> ConfigError:
    return ConfigError(reason, filename=filename, line=line, element=element,
                       attribute=attribute, value=value)


class ConfigErrors(ConfigError):
    """Every problem found in one file, in file order."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(first.reason, filename=first.filename, line=first.line,
                         element=first.element, attribute=first.attribute, value=first.value)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def __reduce__(self) -> tuple[object, ...]:
        return (ConfigErrors, (self.errors,))
