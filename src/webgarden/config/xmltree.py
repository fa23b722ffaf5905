"""The configuration file as a tree of elements with line numbers, parsed safely.

Rules:
- No DTD at all. `<!DOCTYPE` is refused where it starts, before any entity is declared, so
  neither an XXE (`<!ENTITY x SYSTEM "file:///etc/passwd">`) nor a billion laughs
  (`<!ENTITY lol9 "&lol8;&lol8;...">`) ever expands anything. applicationHost.config never
  needs one. Entity declarations and external references are refused too, should a DTD
  ever get through (defusedxml's three guards, all on).
- Without a DTD an entity reference other than the five XML ones is "undefined": an error.
- Every element keeps the line its start tag begins on (expat's position at the start
  event, read through the SAX locator), so every later error can name it.
- Text between elements must be white space: the schema has attributes only.
- At most MAX_CONFIG_BYTES are read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from xml.sax import InputSource, SAXParseException
from xml.sax.handler import ContentHandler
from xml.sax.xmlreader import AttributesImpl, Locator

import defusedxml.sax  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException

from webgarden.config.errors import ConfigError

#: A configuration is kilobytes; anything this large is a mistake (or an attack).
MAX_CONFIG_BYTES = 16 * 1024 * 1024

#: Attributes that name an element in messages: `<add name="Shop Pool">`.
LABEL_ATTRIBUTES = ("name", "path", "bindingInformation", "value", "logFieldName")

REFUSED = ("DTDs are refused: <!DOCTYPE>, entity declarations and external references are "
           "not allowed in a configuration file (nothing was expanded)")


@dataclass(slots=True)
class Node:
    tag: str
    line: int
    attributes: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""  # non-white-space character data, which the schema does not allow

    @property
    def label(self) -> str:
        """`add name="Shop Pool"`: the tag and the attribute that identifies it."""
        for name in LABEL_ATTRIBUTES:
            if name in self.attributes:
                return f'{self.tag} {name}="{self.attributes[name]}"'
        return self.tag


class _TreeBuilder(ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.locator: Locator | None = None
        self.stack: list[Node] = []
        self.root: Node | None = None

    def setDocumentLocator(self, locator: Locator) -> None:
        self.locator = locator

    def startElement(self, name: str, attrs: AttributesImpl) -> None:
        line = self.locator.getLineNumber() if self.locator else 0
        node = Node(name, line or 0, dict(attrs.items()))
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def endElement(self, name: str) -> None:
        self.stack.pop()

    def characters(self, content: str) -> None:
        if self.stack and content.strip():
            self.stack[-1].text += content


def parse(data: bytes | str, filename: str) -> Node:
    """The root element of `data`; ConfigError if it is not well-formed or not safe."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"is larger than {MAX_CONFIG_BYTES} bytes", filename=filename)
    parser = defusedxml.sax.make_parser()
    parser.forbid_dtd = True
    parser.forbid_entities = True
    parser.forbid_external = True
    builder = _TreeBuilder()
    parser.setContentHandler(builder)
    source = InputSource(filename)
    if isinstance(data, str):
        source.setCharacterStream(io.StringIO(data))
    else:
        source.setByteStream(io.BytesIO(data))
    try:
        parser.parse(source)
    except DefusedXmlException:
        raise ConfigError(REFUSED, filename=filename, line=parser.getLineNumber()) from None
    except SAXParseException as exc:
        raise ConfigError(f"not well-formed XML: {exc.getMessage()}", filename=filename,
                          line=exc.getLineNumber()) from None
    if builder.root is None:  # pragma: no cover - expat reports "no element found" first
        raise ConfigError("no root element", filename=filename)
    return builder.root
