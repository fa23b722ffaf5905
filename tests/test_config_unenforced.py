"""Settings accepted but not acted on are named: at every load (`config.unsupported`) and by
`webgarden config check`, from the one table in config/unenforced.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from config_documents import HERE, document, line_of
from harness import free_port
from webgarden.config import loads
from webgarden.config.loader import Configuration
from webgarden.config.schema import rows
from webgarden.config.unenforced import NOT_YET, UNENFORCED, WINDOWS

LIMITS = f'<limits maxBandwidth="1048576" maxConnections="4294967295" /> {HERE}'


def _site(inner: str, binding: str = "*:8080:", app: str = "m:app") -> str:
    return f"""<site name="s" id="1">
  <bindings><binding protocol="http" bindingInformation="{binding}" /></bindings>
  <application path="/" applicationPool="P" app="{app}" />
  {inner}
</site>"""


def test_every_row_of_the_table_names_a_setting_of_the_schema() -> None:
    attributes = {r.path.partition("/")[2] for r in rows(Configuration, "configuration")}
    for row in UNENFORCED:
        if "/@" in row.path:
            assert row.path in attributes, row.path
        else:  # an element: one that has attributes of its own
            assert any(a.startswith(row.path + "/@") for a in attributes), row.path
    assert len({row.path for row in UNENFORCED}) == len(UNENFORCED)  # each said once


def test_a_site_limit_set_to_a_value_is_named_with_file_line_element_and_attribute() -> None:
    text = document(sites=_site(LIMITS))
    config = loads(text, "shop.config")
    assert [str(u) for u in config.unsupported] == [
        f'shop.config:{line_of(text)}: <limits> attribute maxBandwidth="1048576": {NOT_YET}'
    ]  # maxConnections is written at its default: nothing to say
    use = config.unsupported[0]
    assert use.fields() == {"file": "shop.config", "line": line_of(text), "element": "limits",
                            "attribute": "maxBandwidth", "value": "1048576", "reason": NOT_YET}


def test_defaults_elements_values_and_elements_count_as_what_they_stand_for() -> None:
    pools = """<add name="P" managedRuntimeVersion="v4.0">
  <environmentVariables><add name="A" value="1" /></environmentVariables>
</add>
<applicationPoolDefaults><processModel idleTimeoutAction="Suspend" /></applicationPoolDefaults>"""
    sites = _site('<application path="/x" applicationPool="P" app="m:x" interface="asgi" />'
                  '<application path="/y" applicationPool="P" app="m:y" interface="wsgi" />'
                  ) + '\n<siteDefaults><limits connectionTimeout="00:00:30" /></siteDefaults>'
    found = {(u.element, u.attribute, u.why) for u in loads(document(pools, sites)).unsupported}
    assert found == {
        ('add name="P"', "managedRuntimeVersion", WINDOWS),
        ('add name="A"', None, NOT_YET),
        ("processModel", "idleTimeoutAction", NOT_YET),
        ("limits", "connectionTimeout", NOT_YET),
    }


def test_a_file_with_only_enforced_settings_has_nothing_to_say() -> None:
    assert loads(document()).unsupported == ()


def test_config_check_prints_a_line_for_each_unenforced_setting(tmp_path: Path) -> None:
    path = tmp_path / "shop.config"
    text = document(sites=_site(LIMITS))
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "webgarden", "config", "check", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "Accepted, but not acted on (1):",
        f'  {path}:{line_of(text)}: <limits> attribute maxBandwidth="1048576": {NOT_YET}',
    ]


def test_a_server_says_config_unsupported_when_it_loads_the_file(start_server,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "applicationHost.config"
    text = document(sites=_site(LIMITS, binding=f"127.0.0.1:{free_port()}:",
                                app="testapp:application"))
    path.write_text(text)
    server = start_server("serve", "-c", str(path))
    event = server.wait_event(lambda e: e["event"] == "config.unsupported")
    assert (event["file"], event["line"], event["element"], event["attribute"],
            event["value"], event["reason"]) == (str(path), line_of(text), "limits",
                                                 "maxBandwidth", "1048576", NOT_YET)
