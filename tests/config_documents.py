"""Small configuration documents for the config tests, built from fragments.

`document()` wraps pool and site fragments in the <configuration> boilerplate; a line that
ends with the comment HERE is the one a test expects an error on (`line_of`).
"""

from __future__ import annotations

HERE = "<!-- here -->"

POOL = '<add name="P" />'
SITE = """\
<site name="s" id="1">
  <bindings><binding protocol="http" bindingInformation="*:8080:" /></bindings>
  <application path="/" applicationPool="P" app="m:app" />
</site>"""


def document(pools: str = POOL, sites: str = SITE, host_extra: str = "",
             root_extra: str = "") -> str:
    return f"""<configuration>
  <system.applicationHost>
    <applicationPools>
{pools}
    </applicationPools>
    <sites>
{sites}
    </sites>
{host_extra}
  </system.applicationHost>
{root_extra}
</configuration>
"""


def site(name: str = "s", id: int = 1, binding: str = "*:8080:", apps: str = "") -> str:
    apps = apps or '<application path="/" applicationPool="P" app="m:app" />'
    return f"""<site name="{name}" id="{id}">
  <bindings><binding protocol="http" bindingInformation="{binding}" /></bindings>
  {apps}
</site>"""


def line_of(text: str, marker: str = HERE) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"no {marker} in the document")
