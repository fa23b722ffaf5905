"""Request filtering (static.RequestFilter): IIS's <requestFiltering>, 404.x substatus."""

from __future__ import annotations

import pytest

from config_documents import document
from webgarden.config import loads
from webgarden.config.webserver import RequestFilteringConfig
from webgarden.listener.static import (
    CONTENT_TOO_LARGE,
    DOUBLE_ESCAPED,
    EXTENSION_DENIED,
    HEADER_TOO_LONG,
    HIDDEN_NAMESPACE,
    HIGH_BIT_CHARACTERS,
    QUERY_SEQUENCE_DENIED,
    QUERY_TOO_LONG,
    URL_SEQUENCE_DENIED,
    URL_TOO_LONG,
    VERB_DENIED,
    RequestFilter,
)
from webgarden.listener.urls import split_target


def configured(inner: str = "", attributes: str = "") -> RequestFilter:
    web = loads(document(root_extra=f"""<system.webServer><security>
      <requestFiltering {attributes}>{inner}</requestFiltering>
    </security></system.webServer>""")).web_server
    return RequestFilter(web.request_filtering)


DEFAULT = RequestFilter(RequestFilteringConfig())


def check(target: bytes, f: RequestFilter = DEFAULT, method: str = "GET",
          **kwargs: object) -> object:
    t = split_target(target)
    return f.check(method, t.path, t.query, **kwargs)  # type: ignore[arg-type]


def test_an_ordinary_request_passes() -> None:
    assert check(b"/shop/items/42?sort=name") is None
    assert check(b"/") is None
    assert DEFAULT.check("OPTIONS", "*") is None


@pytest.mark.parametrize("target", [b"/bin/x", b"/Bin/x", b"/a/App_Data/db.mdf",
                                    b"/web.config", b"/.git/HEAD", b"/__pycache__/m.pyc",
                                    b"/.venv/bin/python", b"/.env", b"/venv/x"])
def test_hidden_segments_apply_to_every_request(target: bytes) -> None:
    assert check(target) == HIDDEN_NAMESPACE


def test_a_segment_merely_containing_a_hidden_name_passes() -> None:
    assert check(b"/binaries/x") is None and check(b"/my.git/x") is None


@pytest.mark.parametrize("target", [b"/app.py", b"/x/settings.TOML", b"/a.pyc", b"/a.pyo",
                                    b"/site.config", b"/prod.env", b"/a.ini", b"/setup.cfg",
                                    b"/db.sqlite3", b"/data.db"])
def test_webgarden_denies_python_source_settings_and_databases(target: bytes) -> None:
    assert check(target) == EXTENSION_DENIED


def test_extensions_can_be_allowed_again_or_unlisted_ones_denied() -> None:
    allow_py = configured('<fileExtensions><add fileExtension=".py" allowed="true" />'
                          "</fileExtensions>")
    assert check(b"/app.py", allow_py) is None
    assert check(b"/app.pyc", allow_py) == EXTENSION_DENIED
    strict = configured('<fileExtensions allowUnlisted="false">'
                        '<add fileExtension=".html" allowed="true" /></fileExtensions>')
    assert check(b"/index.html", strict) is None
    assert check(b"/logo.png", strict) == EXTENSION_DENIED


def test_hidden_segments_can_be_removed_cleared_or_added() -> None:
    f = configured('<hiddenSegments><remove segment="venv" /><add segment="private" />'
                   "</hiddenSegments>")
    assert check(b"/venv/x", f) is None
    assert check(b"/Private/x", f) == HIDDEN_NAMESPACE
    cleared = configured("<hiddenSegments><clear /></hiddenSegments>")
    assert check(b"/bin/x", cleared) is None


def test_double_escaping_and_plus_are_404_11_unless_allowed() -> None:
    assert check(b"/a%2541b") == DOUBLE_ESCAPED  # decoded once: /a%41b
    assert check(b"/a+b") == DOUBLE_ESCAPED  # IIS: + decodes to a space on the second pass
    assert check(b"/100%25") is None  # a lone %, not an escape
    assert check(b"/a+b", configured(attributes='allowDoubleEscaping="true"')) is None


def test_high_bit_characters_are_allowed_by_default_and_404_12_when_not() -> None:
    assert check(b"/caf%C3%A9") is None
    strict = configured(attributes='allowHighBitCharacters="false"')
    assert check(b"/caf%C3%A9", strict) == HIGH_BIT_CHARACTERS


def test_request_limits_are_404_13_14_15() -> None:
    long_path = (b"/" + b"a" * 200) * 20  # within urls.py's segment limits: 4020 bytes
    assert check(long_path + b"/" + b"a" * 75) is None  # 4096 bytes: maxUrl itself
    assert check(long_path + b"/" + b"a" * 76) == URL_TOO_LONG
    assert check(b"/?" + b"q" * 2048) is None
    assert check(b"/?" + b"q" * 2049) == QUERY_TOO_LONG
    assert check(b"/", content_length=30_000_000) is None
    assert check(b"/", content_length=30_000_001) == CONTENT_TOO_LARGE
    small = configured('<requestLimits maxUrl="10" maxQueryString="5" '
                       'maxAllowedContentLength="100" />')
    assert check(b"/0123456789", small) == URL_TOO_LONG
    assert check(b"/?abcdef", small) == QUERY_TOO_LONG
    assert check(b"/", small, content_length=101) == CONTENT_TOO_LARGE


def test_header_limits_are_431() -> None:
    f = configured('<requestLimits><headerLimits><add header="X-Token" sizeLimit="4" />'
                   "</headerLimits></requestLimits>")
    assert check(b"/", f, headers={"x-token": "abcd"}) is None
    assert check(b"/", f, headers={"x-token": "abcde"}) == HEADER_TOO_LONG


def test_verbs_can_be_denied_or_only_listed_ones_allowed() -> None:
    deny = configured('<verbs><add verb="TRACE" allowed="false" /></verbs>')
    assert check(b"/", deny, method="TRACE") == VERB_DENIED
    assert check(b"/", deny, method="GET") is None
    only = configured('<verbs allowUnlisted="false"><add verb="GET" allowed="true" /></verbs>')
    assert check(b"/", only, method="GET") is None
    assert check(b"/", only, method="POST") == VERB_DENIED


def test_denied_sequences_in_url_and_query() -> None:
    f = configured('<denyUrlSequences><add sequence="/admin" /></denyUrlSequences>'
                   '<denyQueryStringSequences><add sequence="&lt;script" />'
                   "</denyQueryStringSequences>")
    assert check(b"/ADMIN/users", f) == URL_SEQUENCE_DENIED
    assert check(b"/search?q=%3Cscript%3E", f) == QUERY_SEQUENCE_DENIED  # decoded
    assert check(b"/search?q=<script>", f) == QUERY_SEQUENCE_DENIED  # raw
    assert check(b"/search?q=hello", f) is None
    raw_only = configured('<denyQueryStringSequences><add sequence="&lt;script" />'
                          "</denyQueryStringSequences>", 'unescapeQueryString="false"')
    assert check(b"/search?q=%3Cscript%3E", raw_only) is None


def test_always_allowed_urls_and_queries_skip_their_checks() -> None:
    f = configured('<alwaysAllowedUrls><add url="/bin/health.py" /></alwaysAllowedUrls>'
                   '<denyQueryStringSequences><add sequence="drop" /></denyQueryStringSequences>'
                   '<alwaysAllowedQueryStrings><add queryString="drop=1" />'
                   "</alwaysAllowedQueryStrings>")
    assert check(b"/bin/health.py", f) is None
    assert check(b"/bin/other.py", f) == HIDDEN_NAMESPACE
    assert check(b"/?drop=1", f) is None
    assert check(b"/?drop=2", f) == QUERY_SEQUENCE_DENIED


def test_refusals_carry_status_substatus_and_iis_reason() -> None:
    assert (HIDDEN_NAMESPACE.status, HIDDEN_NAMESPACE.substatus) == (404, 8)
    assert (EXTENSION_DENIED.status, EXTENSION_DENIED.substatus) == (404, 7)
    assert EXTENSION_DENIED.reason == "File Extension Denied"
