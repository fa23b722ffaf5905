"""<system.webServer> sections for files, caching, filtering and compression (config/webserver.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_documents import HERE, document, line_of, site
from webgarden.config import ConfigErrors, diff, load, loads
from webgarden.config.loader import Configuration
from webgarden.config.model import ServerConfig, single_app
from webgarden.config.schema import rows
from webgarden.config.webserver import (
    DEFAULT_DOCUMENTS,
    IIS_HIDDEN_SEGMENTS,
    WEBGARDEN_DENIED_EXTENSIONS,
    WEBGARDEN_HIDDEN_SEGMENTS,
    WebServerConfig,
)


def web(xml: str = "") -> WebServerConfig:
    return loads(document(root_extra=f"<system.webServer>{xml}</system.webServer>")).web_server


def errors(xml: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        web(xml)
    return [str(e) for e in caught.value.errors]


def test_a_file_without_these_sections_gets_iis_defaults_and_webgarden_s_additions() -> None:
    w = loads(document()).web_server
    assert w == WebServerConfig() == ServerConfig(sites=(), pools=()).web_server
    caching = w.caching
    assert (caching.enabled, caching.enable_kernel_cache, caching.max_cache_size,
            caching.max_response_size, caching.profiles) == (True, True, 0, 262144, ())
    assert w.default_document.enabled
    assert w.default_document.files == ("Default.htm", "Default.asp", "index.htm",
                                        "index.html", "iisstart.htm") == DEFAULT_DOCUMENTS
    assert not w.directory_browse.enabled
    rf = w.request_filtering
    assert (rf.allow_double_escaping, rf.allow_high_bit_characters) == (False, True)
    limits = rf.request_limits
    assert (limits.max_allowed_content_length, limits.max_url, limits.max_query_string) == (
        30000000, 4096, 2048)
    assert rf.hidden_segments.segments == (
        "web.config", "bin", "App_code", "App_GlobalResources", "App_LocalResources",
        "App_WebReferences", "App_Data", "App_Browsers",
        "__pycache__", ".git", ".venv", "venv", ".env")
    assert rf.hidden_segments.segments == IIS_HIDDEN_SEGMENTS + WEBGARDEN_HIDDEN_SEGMENTS
    assert {(r.file_extension, r.allowed) for r in rf.file_extensions.rules} == {
        (e, False) for e in (".py", ".pyc", ".pyo", ".config", ".env", ".ini", ".toml",
                             ".cfg", ".sqlite3", ".db")}
    assert len(WEBGARDEN_DENIED_EXTENSIONS) == 10
    assert (w.url_compression.do_static_compression,
            w.url_compression.do_dynamic_compression) == (True, True)
    assert w.http_compression.min_file_size_for_comp == 2700
    enabled = {t.mime_type for t in w.http_compression.static_types if t.enabled}
    assert {"text/*", "application/json", "application/javascript", "application/xml",
            "image/svg+xml"} <= enabled
    mime = w.static_content.mime_types()
    assert (mime[".html"], mime[".css"], mime[".js"], mime[".png"], mime[".json"]) == (
        "text/html", "text/css", "application/javascript", "image/png", "application/json")
    assert ".py" not in mime and ".config" not in mime


def test_every_section_is_read() -> None:
    w = web("""
      <caching enabled="true" enableKernelCache="false" maxCacheSize="100" maxResponseSize="1000">
        <profiles>
          <add extension=".aspx" policy="CacheForTimePeriod" kernelCachePolicy="DontCache"
               duration="00:05:00" location="Any" varyByHeaders="Accept-Language"
               varyByQueryString="id" />
        </profiles>
      </caching>
      <staticContent enableDocFooter="false"><clientCache cacheControlMode="UseMaxAge" />
        <mimeMap fileExtension=".md" mimeType="text/plain" /></staticContent>
      <defaultDocument enabled="false"><files><add value="home.html" /></files></defaultDocument>
      <directoryBrowse enabled="true" showFlags="Date, Size" />
      <security><requestFiltering allowDoubleEscaping="true" allowHighBitCharacters="false">
        <requestLimits maxAllowedContentLength="1000" maxUrl="100" maxQueryString="10" />
        <verbs allowUnlisted="false"><add verb="GET" allowed="true" /></verbs>
        <denyUrlSequences><add sequence=".." /></denyUrlSequences>
      </requestFiltering></security>
      <urlCompression doStaticCompression="false" doDynamicCompression="false" />
      <httpCompression minFileSizeForComp="256">
        <dynamicTypes><clear /><add mimeType="application/json" enabled="true" /></dynamicTypes>
      </httpCompression>""")
    profile, = w.caching.profiles
    assert (profile.extension, profile.policy, profile.duration, profile.location,
            profile.vary_by_headers, profile.vary_by_query_string) == (
        ".aspx", "CacheForTimePeriod", 300.0, "Any", "Accept-Language", "id")
    assert (w.caching.enable_kernel_cache, w.caching.max_cache_size,
            w.caching.max_response_size) == (False, 100, 1000)
    assert w.static_content.client_cache.cache_control_mode == "UseMaxAge"
    assert w.static_content.mime_types()[".md"] == "text/plain"
    assert not w.default_document.enabled and w.default_document.files[-1] == "home.html"
    assert w.directory_browse.enabled and w.directory_browse.show_flags == {"Date", "Size"}
    rf = w.request_filtering
    assert rf.allow_double_escaping and not rf.allow_high_bit_characters
    assert rf.request_limits.max_url == 100 and rf.deny_url_sequences == ("..",)
    assert not rf.verbs.allow_unlisted and rf.verbs.rules[0].verb == "GET"
    assert not w.url_compression.do_static_compression
    assert w.http_compression.min_file_size_for_comp == 256
    assert [t.mime_type for t in w.http_compression.dynamic_types] == ["application/json"]


def test_inherited_entries_are_replaced_removed_or_cleared() -> None:
    w = web("""<staticContent>
        <mimeMap fileExtension=".JSON" mimeType="application/x-json" />
        <remove fileExtension=".exe" />
      </staticContent>
      <defaultDocument><files><remove value="Default.asp" /></files></defaultDocument>""")
    mime = w.static_content.mime_types()
    assert mime[".json"] == "application/x-json" and ".exe" not in mime
    assert "Default.asp" not in w.default_document.files
    cleared = web("<staticContent><clear /><mimeMap fileExtension=\".txt\" "
                  'mimeType="text/plain" /></staticContent>')
    assert cleared.static_content.mime_types() == {".txt": "text/plain"}


def test_a_duplicate_written_in_the_file_is_still_an_error() -> None:
    xml = ('<staticContent><mimeMap fileExtension=".foo" mimeType="a/b" />\n'
           f'<mimeMap fileExtension=".FOO" mimeType="a/c" /> {HERE}</staticContent>')
    text = document(root_extra=f"<system.webServer>{xml}</system.webServer>")
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    error, = caught.value.errors
    assert error.line == line_of(text) and "duplicate MIME map" in str(error)


def test_removing_what_is_not_there_and_misspellings_are_errors() -> None:
    assert any("nothing to remove" in e for e in errors(
        '<staticContent><remove fileExtension=".nope" /></staticContent>'))
    assert any("did you mean enableKernelCache" in e for e in errors(
        '<caching enableKernalCache="false" />'))
    assert any("must be one of" in e for e in errors(
        '<caching><profiles><add extension=".x" policy="Forever" /></profiles></caching>'))
    assert any("missing required attribute allowed" in e for e in errors(
        '<security><requestFiltering><fileExtensions><add fileExtension=".x" />'
        "</fileExtensions></requestFiltering></security>"))


def test_unsupported_filtering_rules_are_refused_not_silently_ignored() -> None:
    found = errors("<security><requestFiltering><filteringRules /></requestFiltering>"
                   "</security>")
    assert any("unknown element in <requestFiltering>" in e for e in found)


def test_other_sections_of_system_web_server_and_security_are_skipped() -> None:
    w = web("""<handlers><add name="x" path="*" verb="*" /></handlers>
      <modules runAllManagedModulesForAllRequests="true" />
      <security><authentication><anonymousAuthentication enabled="true" /></authentication>
      </security>""")
    assert w == WebServerConfig()


def test_every_new_attribute_is_documented_with_a_help_text() -> None:
    paths = {r.path: r for r in rows(Configuration, "configuration")
             if r.path.startswith("configuration/system.webServer/")}
    base = "configuration/system.webServer"
    for expected in ("caching/@maxResponseSize", "caching/profiles/add/@kernelCachePolicy",
                     "staticContent/mimeMap/@mimeType", "defaultDocument/files/add/@value",
                     "directoryBrowse/@enabled",
                     "security/requestFiltering/requestLimits/@maxAllowedContentLength",
                     "security/requestFiltering/hiddenSegments/add/@segment",
                     "urlCompression/@doStaticCompression",
                     "httpCompression/@minFileSizeForComp",
                     "httpCompression/staticTypes/add/@mimeType"):
        assert f"{base}/{expected}" in paths, expected
    assert all(r.setting.help for r in paths.values())


def test_a_web_server_change_is_reported_by_diff() -> None:
    old = loads(document())
    new = loads(document(root_extra='<system.webServer><directoryBrowse enabled="true" />'
                                    "</system.webServer>"))
    changes = diff(old, new)
    assert changes.web_server_changed and not changes.routing_changed
    assert not diff(old, loads(document())).web_server_changed


def test_a_virtual_directory_change_is_a_routing_change() -> None:
    def with_vdir(physical: str) -> ServerConfig:
        apps = (f'<application path="/" applicationPool="P" app="m:app">'
                f'<virtualDirectory path="/" physicalPath="{physical}" /></application>')
        return loads(document(sites=site(apps=apps)))

    changes = diff(with_vdir("/srv/a"), with_vdir("/srv/b"))
    assert changes.routing_changed and not changes.web_server_changed


def test_relative_physical_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    apps = ('<application path="/" applicationPool="P" app="m:app">'
            '<virtualDirectory path="/" physicalPath="public" />'
            '<virtualDirectory path="/abs" physicalPath="/srv/abs" />'
            '<virtualDirectory path="/none" /></application>')
    path = tmp_path / "conf" / "app.config"
    path.parent.mkdir()
    path.write_text(document(sites=site(apps=apps)), encoding="utf-8")
    vdirs = load(path).sites[0].applications[0].virtual_directories
    assert [v.physical_path for v in vdirs] == [str(tmp_path / "conf" / "public"), "/srv/abs",
                                                ""]


def test_single_app_configurations_get_the_defaults() -> None:
    assert single_app("m:app").web_server == WebServerConfig()
