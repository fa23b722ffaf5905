"""The schema, declared once: on the dataclass fields themselves.

Each field of a configuration dataclass says, in one place, which XML attribute or element
it comes from, its value type and range (a `values.Kind`), its default and its help:

    queue_length: int = setting("queueLength", Integer(10, 65535), 1000,
                                help="Requests HTTP.sys holds for the pool before 503.")

Three declarations cover applicationHost.config:

- `setting(...)`: an attribute. `element="processModel"` reads it from a child element whose
  attributes are folded into this class (IIS's `<processModel>` becomes PoolConfig fields).
  `spread=(...)` stores one attribute in several fields (bindingInformation ->
  address, port, host). `extension=True` marks webgarden's own, non-IIS attributes.
- `child(...)`: a nested element with its own dataclass (`<recycling>` -> RecyclingConfig).
- `collection(...)`: a repeated element (`<add>`, `<site>`, `<binding>`), optionally inside a
  wrapper element (`<bindings>`), with its key, whether `<clear/>` and `<remove>` are allowed,
  and the name of its defaults element (`applicationPoolDefaults`), as IIS's schema has them.
  `inherited=(...)` gives the items a collection holds before the file says anything: what
  IIS's shipped applicationHost.config puts in it (the default documents, the MIME map).
  The file's `<add>`, `<remove>` and `<clear/>` work on them as on a parent level's items,
  except that an `<add>` whose key is an inherited item's replaces it instead of being a
  duplicate (IIS would want a `<remove>` first).

`spec_of(cls)` turns a class's fields into the grammar the reader walks. `positional=True`
keeps a field without a Python default, so existing positional constructors still work;
the XML default still applies when the file is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from webgarden.config.values import Kind

SCHEMA = "webgarden.schema"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # no default: the attribute must be given (in XML or defaults)


@dataclass(frozen=True)
class Setting:
    xml: str
    kind: Kind[Any]
    default: Any
    help: str
    required: bool = False
    element: str | None = None  # read from this child element (e.g. processModel)
    extension: bool = False  # webgarden's, not IIS's
    spread: tuple[str, ...] = ()  # one attribute -> several fields


@dataclass(frozen=True)
class Child:
    xml: str
    cls: type
    help: str


@dataclass(frozen=True)
class Collection:
    add: str  # the repeated element's tag
    item: type
    key: tuple[str, ...]  # field names; compared case-insensitively, as IIS does
    noun: str  # for messages: "a pool named ..."
    help: str
    wrapper: str | None = None  # <bindings> around <binding>
    defaults: str | None = None  # <applicationPoolDefaults>
    clear: bool = False
    remove: bool = False
    unique: tuple[tuple[str, ...], ...] = ()  # further unique keys (a site's id)
    inherit: bool = True  # may appear in the defaults element of its owner
    scalar: str | None = None  # keep only this field of each item (schedule times)
    inherited: tuple[Any, ...] = ()  # items present before the file's operations


def setting(
    xml: str, kind: Kind[Any], default: Any = MISSING, *, help: str, required: bool = False,
    element: str | None = None, extension: bool = False, spread: tuple[str, ...] = (),
    positional: bool = False, secret: bool = False,
) -> Any:
    meta = {SCHEMA: Setting(xml, kind, default, help, required, element, extension, spread)}
    if default is MISSING or positional:
        return field(metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def filled_by(xml: str) -> Any:
    """A field without an attribute of its own, set by another's `spread` (a binding's port
    and host come from bindingInformation). No default: positional constructors keep it."""
    return field(metadata={SCHEMA: xml})


def child(xml: str, cls: type, *, help: str) -> Any:
    return field(default_factory=cls, metadata={SCHEMA: Child(xml, cls, help)})


def collection(
    add: str, item: type, *, key: tuple[str, ...], noun: str, help: str,
    wrapper: str | None = None, defaults: str | None = None, clear: bool = False,
    remove: bool = False, unique: tuple[tuple[str, ...], ...] = (), inherit: bool = True,
    scalar: str | None = None, positional: bool = False, inherited: tuple[Any, ...] = (),
) -> Any:
    meta = {SCHEMA: Collection(add, item, key, noun, help, wrapper, defaults, clear, remove,
                               unique, inherit, scalar, inherited)}
    if positional:
        return field(metadata=meta)
    default = tuple(getattr(i, scalar) for i in inherited) if scalar else inherited
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ElementSpec:
    """What one element may contain, derived from its dataclass."""

    cls: type
    settings: dict[str, Setting]  # field name -> setting (every setting, folded ones too)
    attributes: dict[str, str]  # xml attribute -> field name, on the element itself
    groups: dict[str, dict[str, str]]  # folded child tag -> {xml attribute -> field name}
    children: dict[str, tuple[str, Child]]  # tag -> (field, child)
    collections: dict[str, tuple[str, Collection]]  # add tag or wrapper tag -> (field, coll)
    defaults: dict[str, type]  # defaults tag -> item class, beside unwrapped collections
    open: bool  # unknown child elements are ignored (system.webServer, for now)

    def key_attributes(self, key: tuple[str, ...]) -> list[str]:
        """The xml attributes that hold the key fields."""
        return [xml for xml, name in self.attributes.items()
                if set(self.settings[name].spread or (name,)) & set(key)]


@cache
def spec_of(cls: type) -> ElementSpec:
    settings: dict[str, Setting] = {}
    attributes: dict[str, str] = {}
    groups: dict[str, dict[str, str]] = {}
    children: dict[str, tuple[str, Child]] = {}
    collections: dict[str, tuple[str, Collection]] = {}
    defaults: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(SCHEMA)
        if isinstance(meta, Setting):
            settings[f.name] = meta
            target = groups.setdefault(meta.element, {}) if meta.element else attributes
            target[meta.xml] = f.name
        elif isinstance(meta, Child):
            children[meta.xml] = (f.name, meta)
        elif isinstance(meta, Collection):
            collections[meta.wrapper or meta.add] = (f.name, meta)
            if not meta.wrapper:
                defaults.update(collection_defaults(meta))
    return ElementSpec(cls, settings, attributes, groups, children, collections, defaults,
                       bool(getattr(cls, "XML_OPEN", False)))


def collection_defaults(coll: Collection) -> dict[str, type]:
    """The defaults elements that may sit beside a collection's items: its own, and those of
    the collections inside its items (IIS: `<sites>` holds siteDefaults, applicationDefaults
    and virtualDirectoryDefaults; `<site>` the last two; `<application>` the last)."""
    found = {coll.defaults: coll.item} if coll.defaults else {}
    found.update(spec_of(coll.item).defaults)
    return found


@dataclass(frozen=True)
class Row:
    """One attribute, for documentation: `applicationPools/add/processModel/@idleTimeout`."""

    path: str
    field: str
    setting: Setting


def rows(cls: type, path: str) -> Iterator[Row]:
    """Every attribute reachable from `cls`, with its XML path (for help and tests)."""
    spec = spec_of(cls)
    for name, s in spec.settings.items():
        where = f"{path}/{s.element}" if s.element else path
        yield Row(f"{where}/@{s.xml}", name, s)
    for tag, (_, c) in spec.children.items():
        yield from rows(c.cls, f"{path}/{tag}")
    for _, (_, coll) in spec.collections.items():
        inner = f"{path}/{coll.wrapper}" if coll.wrapper else path
        yield from rows(coll.item, f"{inner}/{coll.add}")
