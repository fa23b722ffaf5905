"""The configuration parser refuses DTDs: no entity is ever expanded, no file or URL read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config_documents import document
from webgarden.config import ConfigErrors, check, loads

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE configuration [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
""" + document('<add name="&lol9;" />')


def _xxe(secret: Path) -> str:
    return f"""<?xml version="1.0"?>
<!DOCTYPE configuration [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>
""" + document('<add name="&xxe;" />')


def _refused(text: str) -> str:
    with pytest.raises(ConfigErrors) as caught:
        loads(text, "evil.config")
    error, = caught.value.errors
    assert error.line == 2  # where <!DOCTYPE starts: refused before any declaration
    assert "DTDs are refused" in error.reason and "nothing was expanded" in error.reason
    return str(caught.value)


def test_an_xxe_file_is_refused_and_the_file_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE", encoding="utf-8")
    message = _refused(_xxe(secret))
    assert "TOP-SECRET-VALUE" not in message


def test_a_billion_laughs_file_is_refused_without_expanding_it() -> None:
    started = time.perf_counter()
    message = _refused(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1.0  # 10**9 "lol"s would take far longer
    assert "lol" not in message.replace("evil.config", "")


def test_an_external_dtd_is_refused_without_fetching_it() -> None:
    text = ('<?xml version="1.0"?>\n<!DOCTYPE configuration SYSTEM '
            '"http://127.0.0.1:9/evil.dtd">\n' + document())
    _refused(text)


def test_an_entity_reference_without_a_dtd_is_an_error_not_an_expansion(
        tmp_path: Path) -> None:
    path = tmp_path / "undefined.config"
    path.write_text(document('<add name="&xxe;" />'), encoding="utf-8")
    error, = check(path)
    assert (error.line, "undefined entity" in error.reason) == (4, True)


def test_the_five_xml_entities_still_work() -> None:
    config = loads(document('<add name="A &apos;B&apos;" />', sites="""
<site name="Q&amp;A" id="1"><bindings><binding protocol="http" bindingInformation="*:80:" />
</bindings><application path="/" applicationPool="A 'B'" app="m:app" /></site>"""))
    assert (config.pools[0].name, config.sites[0].name) == ("A 'B'", "Q&A")
