"""Bad configurations: each error names the file, the line, the element and the attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_documents import HERE, POOL, SITE, document, line_of, site
from webgarden.config import ConfigError, ConfigErrors, check, loads

APP = '<application path="/" applicationPool="P" app="m:app" />'


def _pool(attributes: str = "", inner: str = "") -> str:
    return f'<add name="P" {attributes}>{inner}</add> {HERE}'


def _app(attributes: str) -> str:
    return site(apps=f"<application {attributes} /> {HERE}")


# (id, document, attribute named in the error or None, words in the reason)
CASES: list[tuple[str, str, str | None, str]] = [
    ("queue too short", document(_pool('queueLength="5"')), "queueLength",
     "must be between 10 and 65535"),
    ("queue not a number", document(_pool('queueLength="many"')), "queueLength",
     "whole number"),
    ("pool name with a slash", document(POOL + f'\n<add name="a/b" /> {HERE}'), "name",
     "must not contain /"),
    ("pool name with a colon", document(POOL + f'\n<add name="a:b" /> {HERE}'), "name",
     "must not contain :"),
    ("pool without a name", document(POOL + f"\n<add /> {HERE}"), None,
     "missing required attribute name"),
    ("two pools of one name", document(POOL + f'\n<add name="p" /> {HERE}'), "name",
     "duplicate application pool"),
    ("idle timeout not in minutes",
     document(_pool(inner='<processModel idleTimeout="00:00:30" />')), "idleTimeout",
     "granularity"),
    ("ping interval as a bare number",
     document(_pool(inner='<processModel pingInterval="30" />')), "pingInterval", "time span"),
    ("ping interval zero", document(_pool(inner='<processModel pingInterval="00:00:00" />')),
     "pingInterval", "between 00:00:01"),
    ("negative max processes", document(_pool(inner='<processModel maxProcesses="-1" />')),
     "maxProcesses", "between 0 and"),
    ("unknown identity", document(_pool(inner='<processModel identityType="Nobody" />')),
     "identityType", "must be one of LocalSystem"),
    ("identity misspelled",
     document(_pool(inner='<processModel identityType="NetworkServce" />')),
     "identityType", "did you mean NetworkService?"),
    ("bool as yes", document(_pool(inner='<processModel pingingEnabled="yes" />')),
     "pingingEnabled", "true or false"),
    ("schedule past midnight", document(_pool(
        inner='<recycling><periodicRestart><schedule><add value="24:00:00" />'
              '</schedule></periodicRestart></recycling>')), "value", "between 00:00:00"),
    ("unknown recycle flag", document(_pool(inner='<recycling logEventOnRecycle="Time, Bogus" />')),
     "logEventOnRecycle", "must be one of"),
    ("rapid fail interval under a minute",
     document(_pool(inner='<failure rapidFailProtectionInterval="00:00:30" />')),
     "rapidFailProtectionInterval", "between 00:01:00"),
    ("cpu affinity mask zero", document(_pool(inner='<cpu smpProcessorAffinityMask="0" />')),
     "smpProcessorAffinityMask", "between 1 and"),
    ("empty environment value", document(_pool(
        inner='<environmentVariables><add name="A" value="" /></environmentVariables>')),
     "value", "must not be empty"),
    ("removing an undefined variable", document(_pool(
        inner='<environmentVariables><remove name="A" /></environmentVariables>')), None,
     "nothing to remove"),
    ("two threads counts", document(_pool('threads="0"')), "threads", "between 1 and"),
    ("site name with a question mark", document(sites=site(name="a?b").replace(
        '<site name="a?b" id="1">', f'<site name="a?b" id="1"> {HERE}')), "name",
     "must not contain / or ?"),
    ("two sites of one name", document(sites=SITE + "\n" + site(id=2, binding="*:81:").replace(
        '<site name="s" id="2">', f'<site name="S" id="2"> {HERE}')), "name", "duplicate site"),
    ("two sites of one id", document(sites=SITE + "\n" + site(name="t", binding="*:81:").replace(
        '<site name="t" id="1">', f'<site name="t" id="1"> {HERE}')), "id", "duplicate site"),
    ("relative application path", document(sites=_app('path="shop" app="m:app"')), "path",
     'must start with "/"'),
    ("application path with a trailing slash",
     document(sites=site(apps=APP + f'<application path="/shop/" app="m:app" /> {HERE}')),
     "path", 'must not end with "/"'),
    ("application path with dot dot",
     document(sites=site(apps=APP + f'<application path="/a/../b" app="m:app" /> {HERE}')),
     "path", '".." segment'),
    ("two applications at one path", document(sites=site(
        apps=APP + f'<application path="/" applicationPool="P" app="n:app" /> {HERE}')),
     "path", "duplicate application"),
    ("application in an undefined pool",
     document(sites=_app('path="/" applicationPool="Nope" app="m:app"')), "applicationPool",
     "no application pool has this name"),
    ("application in the undefined default pool", document(sites=_app('path="/" app="m:app"')),
     "applicationPool", "DefaultAppPool"),
    ("application without app", document(sites=_app('path="/" applicationPool="P"')), None,
     "missing required attribute app"),
    ("app that is not module:callable",
     document(sites=_app('path="/" applicationPool="P" app="shop.wsgi"')), "app",
     '"module:callable"'),
    ("unknown interface",
     document(sites=_app('path="/" applicationPool="P" app="m:a" interface="cgi"')),
     "interface", "must be one of wsgi, asgi, auto"),
    ("https binding", document(sites=site(apps=APP).replace(
        'protocol="http"', 'protocol="https"').replace("</bindings>", f"</bindings> {HERE}")),
     "certificateHash", "names no certificate"),
    ("ftp binding", document(sites=site(apps=APP).replace(
        'protocol="http"', 'protocol="ftp"').replace("</bindings>", f"</bindings> {HERE}")),
     "protocol", "unknown protocol: http or https"),
    ("binding port zero", document(sites=site(binding="*:0:").replace(
        "</bindings>", f"</bindings> {HERE}")), "bindingInformation", "between 1 and 65535"),
    ("binding without a host part", document(sites=site(binding="*:8080").replace(
        "</bindings>", f"</bindings> {HERE}")), "bindingInformation", '"IP:port:host"'),
    ("bare IPv6 binding", document(sites=site(binding="::1:8080:").replace(
        "</bindings>", f"</bindings> {HERE}")), "bindingInformation", "brackets"),
    ("binding on a bad address", document(sites=site(binding="999.1.1.1:80:").replace(
        "</bindings>", f"</bindings> {HERE}")), "bindingInformation", "not an IP address"),
    ("wildcard not left-most", document(sites=site(binding="*:80:shop.*.example").replace(
        "</bindings>", f"</bindings> {HERE}")), "bindingInformation", "left-most label"),
    ("binding used by two sites", document(sites=SITE + "\n" + site(name="t", id=2).replace(
        "</bindings>", f"</bindings> {HERE}")), "bindingInformation",
     "already used by site 's'"),
    ("site below its bandwidth floor", document(sites=site().replace(
        "</bindings>", f'</bindings><limits maxBandwidth="100" /> {HERE}')), "maxBandwidth",
     "must not be between 0 and 1023"),
    ("site without a root application", document(sites=site(
        apps='<application path="/shop" applicationPool="P" app="m:app" />').replace(
        '<site name="s" id="1">', f'<site name="s" id="1"> {HERE}')), None,
     "no root application"),
    ("site without bindings", document(sites=f'<site name="s" id="1"> {HERE}\n{APP}</site>'),
     None, "has no <binding>"),
    ("no site at all", document(sites="").replace(
        "<system.applicationHost>", f"<system.applicationHost> {HERE}"), None,
     "no <site> is defined"),
    ("misspelled attribute", document(_pool('queuLength="10"')), "queuLength",
     "did you mean queueLength?"),
    ("attribute on the wrong element", document(_pool('idleTimeout="00:20:00"')),
     "idleTimeout", "belongs on <processModel>"),
    ("misspelled element", document(sites=site(
        apps=f'<aplication path="/" app="m:app" /> {HERE}')), None,
     "did you mean application?"),
    ("unknown section", document(host_extra=f"<log /> {HERE}"), None,
     "unknown element in <system.applicationHost>"),
    ("unknown root section", document(root_extra=f"<system.web /> {HERE}"), None,
     "did you mean system.webServer?"),
    ("unknown serverRuntime attribute", document(
        root_extra=f'<system.webServer><serverRuntime enabeld="true" /> {HERE}'
                   "</system.webServer>"), "enabeld", "did you mean enabled?"),
    ("two processModel elements", document(_pool(
        inner='<processModel />\n<processModel maxProcesses="2" />')), None,
     "may appear only once"),
    ("clear in the pools collection", document(POOL + f"\n<clear /> {HERE}"), None,
     "not allowed in this collection"),
    ("application in siteDefaults", document(sites=SITE + f'\n<siteDefaults>{APP} {HERE}'
                                             "</siteDefaults>"), None,
     "not allowed in <siteDefaults>"),
    ("text inside an element", document(f'<add name="P">fast</add> {HERE}'), None,
     "'fast' is not allowed"),
    ("not well-formed", document(f'<add name="P">\n</ad> {HERE}'), None, "mismatched tag"),
    ("an attribute twice", document(f'<add name="P" name="Q" /> {HERE}'), None,
     "duplicate attribute"),
    ("the wrong root", f"<configurations> {HERE}\n</configurations>", None,
     "root element must be <configuration>"),
]


@pytest.mark.parametrize(("text", "attribute", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_bad_configuration_is_reported_at_its_line_and_attribute(
        text: str, attribute: str | None, reason: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        loads(text, "shop.config")
    errors = caught.value.errors
    assert len(errors) == 1, str(caught.value)
    error, = errors
    assert (error.filename, error.line) == ("shop.config", line_of(text)), str(error)
    assert error.attribute == attribute, str(error)
    assert reason in error.reason, str(error)
    assert str(error).startswith(f"shop.config:{line_of(text)}: ")


def test_an_error_reads_file_line_element_attribute_and_reason() -> None:
    text = document(POOL + '\n<add name="Shop Pool" queueLength="5" />')
    with pytest.raises(ConfigError) as caught:
        loads(text, "shop.config")
    assert str(caught.value) == (
        'shop.config:5: <add name="Shop Pool"> attribute queueLength="5": '
        "must be between 10 and 65535")


def test_every_error_in_a_file_is_reported_in_file_order(tmp_path: Path) -> None:
    pools = '<add name="P" queueLength="1" />\n<add name="Q" startMode="Sometimes" />'
    sites = site(apps='<application path="/" applicationPool="R" app="m:app" />\n'
                      '<application path="/x" applicationPool="P" app="nope" />')
    path = tmp_path / "bad.config"
    path.write_text(document(pools, sites), encoding="utf-8")
    errors = check(path)
    assert [(e.line, e.attribute) for e in errors] == [
        (4, "queueLength"), (5, "startMode"), (10, "applicationPool"), (11, "app")]
    assert all(e.filename == str(path) for e in errors)
    assert check(tmp_path / "missing.config")[0].reason.startswith("cannot read")


def test_a_good_file_checks_clean(tmp_path: Path) -> None:
    path = tmp_path / "good.config"
    path.write_text(document(), encoding="utf-8")
    assert check(path) == []


def test_a_bad_value_is_not_reported_twice() -> None:
    """A pool whose name is invalid: one error, not also "missing name" or "no such pool"."""
    text = document(f'<add name="a/b" /> {HERE}', site(
        apps=f'<application path="/" applicationPool="a/b" app="m:app" /> {HERE}'))
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    assert [e.attribute for e in caught.value.errors] == ["name", "applicationPool"]
