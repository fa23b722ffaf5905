"""Building: `Parsed` records -> frozen dataclasses, with IIS's defaults and collections.

Rules (IIS's configuration system, iis-semantics.md §0):
- A value comes from the element itself, else from the defaults elements in scope, else
  from the schema's default. A required attribute found nowhere is an error.
- Defaults elements nest: `<sites><applicationDefaults>` applies to every site's
  applications, a `<site><applicationDefaults>` overrides it attribute by attribute for that
  site. A defaults element never supplies an item's key (`applicationPoolDefaults/@name`).
- A collection is built in document order: the items inherited from the defaults element
  first, then `<add>` appends, `<remove>` deletes by key (an error if nothing matches),
  `<clear/>` empties. A collection may start with `inherited` items (schema.py); an `<add>`
  with the key of one of those replaces it. Keys compare case-insensitively, as IIS's do
  (`caseSensitive="false"` is the schema's default); a second item with a key already
  present is an error that names the first one's line. Some collections have further
  unique keys (a site's id).
- An item that cannot be built (a required attribute missing) is left out, after its
  error, and its class noted in `dropped`; `Built.tainted` marks objects in whose element
  errors were found, so later cross-checks do not pile a second error onto the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webgarden.config.reader import Add, Clear, Op, Parsed, Remove, Report
from webgarden.config.schema import MISSING, Collection, spec_of


def merge(base: Parsed | None, over: Parsed | None, drop: tuple[str, ...] = ()) -> Parsed | None:
    """`over`'s values on top of `base`'s (a defaults element), children merged alike."""
    if base is None or over is None:
        return over if base is None else base
    values = {k: v for k, v in base.values.items() if k not in drop}
    origins = {k: v for k, v in base.origins.items() if k not in drop}
    children: dict[str, Parsed] = {}
    for name in base.children.keys() | over.children.keys():
        merged = merge(base.children.get(name), over.children.get(name))
        if merged is not None:
            children[name] = merged
    ops = {name: [*base.ops.get(name, []), *over.ops.get(name, [])]
           for name in base.ops.keys() | over.ops.keys()}
    return Parsed(over.node, values | over.values, origins | over.origins, set(over.invalid),
                  children, ops, over.defaults, over.errors)


def _normal(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Built:
    """Where a built object came from, and whether errors were found in it."""

    parsed: Parsed
    tainted: bool


class Builder:
    def __init__(self, report: Report) -> None:
        self.report = report
        self._built: dict[int, Built] = {}
        self._keep: list[object] = []  # the built objects, so their ids stay theirs
        self.dropped: set[type] = set()  # item classes of which some could not be built

    def origin(self, obj: object) -> Built | None:
        return self._built.get(id(obj))

    def build(self, cls: type, parsed: Parsed | None, scope: Mapping[str, Parsed]) -> Any:
        """An instance of `cls`, or None if a required attribute is missing."""
        spec = spec_of(cls)
        start = len(self.report.errors)
        if parsed is not None and parsed.defaults:
            inner = dict(scope)
            for tag, element in parsed.defaults.items():
                inner[tag] = merge(scope.get(tag), element) or element
            scope = inner
        values = parsed.values if parsed else {}
        kwargs: dict[str, Any] = {}
        complete = True
        for name, declared in spec.settings.items():
            names = declared.spread or (name,)
            if names[0] in values:
                kwargs.update((n, values[n]) for n in names)
            elif declared.required or declared.default is MISSING:
                complete = False
                if parsed is not None and name not in parsed.invalid:
                    self.report.error(parsed.node, f"missing required attribute {declared.xml}")
            else:
                kwargs[name] = declared.default
        for name, declared_child in spec.children.values():
            sub = parsed.children.get(name) if parsed else None
            kwargs[name] = self.build(declared_child.cls, sub, scope)
        for name, coll in spec.collections.values():
            ops = parsed.ops.get(name, []) if parsed else []
            kwargs[name] = self._collection(coll, ops, scope)
        if not complete:
            return None
        obj = cls(**kwargs)
        if parsed is not None:
            tainted = parsed.errors > 0 or len(self.report.errors) > start
            self._built[id(obj)] = Built(parsed, tainted)
            self._keep.append(obj)
        return obj

    def _collection(self, coll: Collection, ops: list[Op], scope: Mapping[str, Parsed]
                    ) -> tuple[Any, ...]:
        base = scope.get(coll.defaults) if coll.defaults else None
        items: list[tuple[Any, Parsed | None]] = [(obj, None) for obj in coll.inherited]
        for op in ops:
            if isinstance(op, Clear):
                items.clear()
            elif isinstance(op, Remove):
                key = tuple(_normal(v) for v in op.key)
                kept = [(o, p) for o, p in items if self._key(o, coll.key) != key]
                if len(kept) == len(items):
                    self.report.error(op.node, f"nothing to remove: no {coll.noun} with that "
                                               "key is defined before this")
                items = kept
            elif isinstance(op, Add):
                merged = merge(base, op.parsed, drop=coll.key)
                obj = self.build(coll.item, merged, scope) if merged else None
                if obj is None:
                    self.dropped.add(coll.item)
                elif (at := self._inherited(coll, obj, items)) is not None:
                    items[at] = (obj, op.parsed)
                elif not self._duplicate(coll, obj, op.parsed, items):
                    items.append((obj, op.parsed))
        if coll.scalar:
            return tuple(getattr(obj, coll.scalar) for obj, _ in items)
        return tuple(obj for obj, _ in items)

    @staticmethod
    def _key(obj: object, fields: tuple[str, ...]) -> tuple[object, ...]:
        return tuple(_normal(getattr(obj, f)) for f in fields)

    def _inherited(self, coll: Collection, obj: object,
                   items: list[tuple[Any, Parsed | None]]) -> int | None:
        """The position of the inherited item `obj` overrides, if any."""
        mine = self._key(obj, coll.key)
        for at, (other, other_parsed) in enumerate(items):
            if other_parsed is None and self._key(other, coll.key) == mine:
                return at
        return None

    def _duplicate(self, coll: Collection, obj: object, parsed: Parsed,
                   items: list[tuple[Any, Parsed | None]]) -> bool:
        for key in (coll.key, *coll.unique):
            mine = self._key(obj, key)
            for other, other_parsed in items:
                if other_parsed is not None and self._key(other, key) == mine:
                    attribute = spec_of(coll.item).key_attributes(key)[0]
                    raw = parsed.node.attributes.get(attribute)
                    self.report.error(
                        parsed.node, f"duplicate {coll.noun}: one with this {attribute} is "
                                     f"already defined at line {other_parsed.node.line}",
                        attribute, raw)
                    return True
        return False
