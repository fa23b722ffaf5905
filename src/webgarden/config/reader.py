"""Reading: the element tree, checked against the schema, into `Parsed` records.

Rules:
- Every attribute must be one the element's schema declares; its text must parse with the
  attribute's kind. An unknown name is an error with a "did you mean" (difflib), or, when the
  name exists on a neighbouring element (`idleTimeout` written on `<add>`), where it belongs.
- Every child element must be declared: a folded element (`<processModel>`), a nested
  element (`<recycling>`), a collection's item or wrapper, `<clear/>` or `<remove>` where the
  collection allows them, or a defaults element (`<applicationPoolDefaults>`) where IIS puts
  it. An element declared once may appear once. Only an "open" element (`system.webServer`,
  for now) skips what it does not know.
- A defaults element has its item's attributes and children but not the collections that
  IIS does not inherit (`<siteDefaults>` holds no `<application>`).
- Nothing stops at the first error: a bad value is reported and left out (its default
  applies), an unknown element is reported and skipped, and reading goes on, so one run
  reports every problem in the file. `Parsed.errors` counts those inside each element.

What is read is not yet merged or checked across elements: that is builder.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from webgarden.config.errors import ConfigError
from webgarden.config.schema import Collection, ElementSpec, collection_defaults, spec_of
from webgarden.config.values import suggestion

if TYPE_CHECKING:  # the parser pulls in xml.sax and urllib: only load() needs them
    from webgarden.config.xmltree import Node


class Report:
    """Collects the errors of one file."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[ConfigError] = []

    def error(self, node: Node | None, reason: str, attribute: str | None = None,
              value: str | None = None) -> None:
        self.errors.append(ConfigError(
            reason, filename=self.filename, line=node.line if node else None,
            element=node.label if node else None, attribute=attribute, value=value))


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was written."""

    node: Node
    attribute: str
    raw: str


@dataclass(eq=False, slots=True)
class Parsed:
    """One element as read: the values it sets, its children and collection operations."""

    node: Node
    values: dict[str, Any] = field(default_factory=dict)  # field name -> value
    origins: dict[str, Origin] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)  # fields whose text was rejected
    children: dict[str, Parsed] = field(default_factory=dict)  # field -> nested element
    ops: dict[str, list[Op]] = field(default_factory=dict)  # collection field -> add/remove/clear
    defaults: dict[str, Parsed] = field(default_factory=dict)  # defaults tag -> element
    errors: int = 0  # errors reported inside this element


@dataclass(frozen=True, slots=True)
class Add:
    parsed: Parsed


@dataclass(frozen=True, slots=True)
class Remove:
    key: tuple[Any, ...]
    node: Node


@dataclass(frozen=True, slots=True)
class Clear:
    node: Node


Op = Add | Remove | Clear


class Reader:
    def __init__(self, report: Report) -> None:
        self.report = report

    def element(self, node: Node, spec: ElementSpec, *, in_defaults: bool = False) -> Parsed:
        start = len(self.report.errors)
        parsed = Parsed(node)
        self._no_text(node)
        self._attributes(parsed, node, spec.attributes, spec)
        seen: dict[str, Node] = {}
        for sub in node.children:
            self._child(parsed, sub, spec, seen, in_defaults)
        parsed.errors = len(self.report.errors) - start
        return parsed

    def _child(self, parsed: Parsed, sub: Node, spec: ElementSpec, seen: dict[str, Node],
               in_defaults: bool) -> None:
        tag = sub.tag
        defaults = {} if in_defaults else spec.defaults
        coll = spec.collections.get(tag)
        once = tag in spec.groups or tag in spec.children or tag in defaults or bool(
            coll and coll[1].wrapper)
        if once and tag in seen:
            self.report.error(sub, f"<{tag}> may appear only once here "
                                   f"(first at line {seen[tag].line})")
            return
        seen[tag] = sub
        if tag in spec.groups:
            self._no_text(sub)
            self._attributes(parsed, sub, spec.groups[tag], spec)
            for extra in sub.children:
                self._unknown_element(extra, sub.tag, [])
        elif tag in spec.children:
            name, declared = spec.children[tag]
            parsed.children[name] = self.element(sub, spec_of(declared.cls))
        elif coll and not (in_defaults and not coll[1].inherit):
            name, collection = coll
            if collection.wrapper == tag:
                self._wrapper(parsed, sub, name, collection)
            else:
                self._collection_op(parsed, sub, name, collection)
        elif tag in defaults:
            parsed.defaults[tag] = self.element(sub, spec_of(defaults[tag]), in_defaults=True)
        elif tag in ("clear", "remove") and (target := self._unwrapped(spec, tag)):
            self._collection_op(parsed, sub, *target)
        elif not spec.open:
            known = [*spec.groups, *spec.children, *spec.collections, *defaults]
            known += [op for op in ("clear", "remove") if self._unwrapped(spec, op)]
            if in_defaults and coll:
                self.report.error(sub, f"<{tag}> is not allowed in <{parsed.node.tag}>")
            else:
                self._unknown_element(sub, parsed.node.tag, known)

    @staticmethod
    def _unwrapped(spec: ElementSpec, op: str) -> tuple[str, Collection] | None:
        for name, coll in spec.collections.values():
            if not coll.wrapper and getattr(coll, op):
                return name, coll
        return None

    def _wrapper(self, owner: Parsed, node: Node, name: str, coll: Collection) -> None:
        self._no_text(node)
        for attribute, raw in node.attributes.items():
            self.report.error(node, "unknown attribute (this element has none)", attribute, raw)
        defaults = collection_defaults(coll)
        for sub in node.children:
            if sub.tag in defaults:
                if sub.tag in owner.defaults:
                    first = owner.defaults[sub.tag].node.line
                    self.report.error(sub, f"<{sub.tag}> may appear only once "
                                           f"(first at line {first})")
                    continue
                owner.defaults[sub.tag] = self.element(sub, spec_of(defaults[sub.tag]),
                                                       in_defaults=True)
            elif sub.tag in (coll.add, "clear", "remove"):
                self._collection_op(owner, sub, name, coll)
            else:
                known = [coll.add, *defaults]
                known += [op for op in ("clear", "remove") if getattr(coll, op)]
                self._unknown_element(sub, node.tag, known)

    def _collection_op(self, owner: Parsed, node: Node, name: str, coll: Collection) -> None:
        ops = owner.ops.setdefault(name, [])
        item = spec_of(coll.item)
        if node.tag == coll.add:
            ops.append(Add(self.element(node, item)))
        elif node.tag == "clear" and coll.clear:
            self._no_text(node)
            for attribute, raw in node.attributes.items():
                self.report.error(node, "unknown attribute (<clear/> has none)", attribute, raw)
            ops.append(Clear(node))
        elif node.tag == "remove" and coll.remove:
            removed = self._remove_key(node, item, coll)
            if removed is not None:
                ops.append(Remove(removed, node))
        else:
            allowed = ", ".join(f"<{t}>" for t in (coll.add, "clear", "remove")
                                if t == coll.add or getattr(coll, t))
            self.report.error(node, f"<{node.tag}> is not allowed in this collection "
                                    f"(IIS allows {allowed})")

    def _remove_key(self, node: Node, item: ElementSpec, coll: Collection
                    ) -> tuple[Any, ...] | None:
        keys = item.key_attributes(coll.key)
        probe = Parsed(node)
        self._attributes(probe, node, {k: item.attributes[k] for k in keys}, item)
        missing = [k for k in keys if k not in node.attributes]
        for attribute in missing:
            self.report.error(node, f"missing required attribute {attribute}")
        if missing or probe.invalid:
            return None
        return tuple(probe.values[k] for k in coll.key)

    def _attributes(self, parsed: Parsed, node: Node, names: dict[str, str],
                    spec: ElementSpec) -> None:
        for xml, raw in node.attributes.items():
            name = names.get(xml)
            if name is None:
                self._unknown_attribute(parsed.node.tag, node, xml, raw, names, spec)
                continue
            declared = spec.settings[name]
            try:
                value = declared.kind.parse(raw)
            except ValueError as exc:
                self.report.error(node, str(exc), xml, raw)
                parsed.invalid.add(name)
                continue
            if declared.spread:
                parsed.values.update(zip(declared.spread, value, strict=True))
            else:
                parsed.values[name] = value
            parsed.origins[name] = Origin(node, xml, raw)

    def _unknown_attribute(self, owner: str, node: Node, xml: str, raw: str,
                           names: dict[str, str], spec: ElementSpec) -> None:
        homes = [f"<{tag}>" for tag, group in spec.groups.items() if xml in group]
        if xml in spec.attributes and names is not spec.attributes:
            homes.append(f"<{owner}>")
        if homes:
            reason = f"unknown attribute here: {xml} belongs on {homes[0]}"
        else:
            reason = f"unknown attribute{suggestion(xml, names)}"
        self.report.error(node, reason, xml, raw)

    def _unknown_element(self, node: Node, parent: str, known: list[str]) -> None:
        hint = suggestion(node.tag, known)
        if not hint and known and len(known) <= 12:
            hint = f" (allowed: {', '.join(sorted(known))})"
        self.report.error(node, f"unknown element in <{parent}>{hint}")

    def _no_text(self, node: Node) -> None:
        if node.text:
            self.report.error(node, f"text {node.text.strip()[:40]!r} is not allowed: "
                                    "settings are attributes")

