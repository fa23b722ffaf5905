"""diff(old, new) says exactly what changed; summary() describes a configuration."""

from __future__ import annotations

from pathlib import Path

from config_documents import document, site
from webgarden.config import PoolChange, diff, load, loads, summary
from webgarden.config.model import Binding, ServerConfig

POOLS = '<add name="A" />\n<add name="B" />'


def _config(pools: str = POOLS, *, b_app: str = "b:app", extra_binding: str = "",
            a_extra: str = "") -> ServerConfig:
    sites = f"""
<site name="one" id="1">
  <bindings><binding protocol="http" bindingInformation="*:8080:one" />{extra_binding}</bindings>
  <application path="/" applicationPool="A" app="a:app" {a_extra} />
  <application path="/b" applicationPool="B" app="{b_app}" />
</site>
{site(name="two", id=2, binding="*:8080:two",
      apps='<application path="/" applicationPool="B" app="two:app" />')}"""
    return loads(document(pools, sites))


def test_nothing_changed_gives_an_empty_diff() -> None:
    changes = diff(_config(), _config())
    assert changes.empty and not changes


def test_one_pools_application_changed_recycles_only_that_pool() -> None:
    changes = diff(_config(), _config(b_app="b2:app"))
    assert changes.pools_changed == ("B",)
    assert changes.pool_changes == (PoolChange("B", ("applications",), recycle=True),)
    assert changes.pools_to_recycle == ("B",)
    assert (changes.pools_added, changes.pools_removed) == ((), ())
    assert (changes.bindings_added, changes.bindings_removed, changes.routing_changed) == (
        (), (), False)
    assert changes.sites_changed == ("one",)


def test_a_binding_added_is_reported_with_its_site_and_new_endpoint() -> None:
    extra = '<binding protocol="http" bindingInformation="127.0.0.1:9090:" />'
    changes = diff(_config(), _config(extra_binding=extra))
    assert changes.bindings_added == (("one", Binding("127.0.0.1", 9090)),)
    assert changes.endpoints_added == (("127.0.0.1", 9090),)
    assert changes.routing_changed and changes.pools_changed == ()
    back = diff(_config(extra_binding=extra), _config())
    assert back.bindings_removed == changes.bindings_added
    assert back.endpoints_removed == (("127.0.0.1", 9090),)


def test_a_pool_setting_change_recycles_unless_rotation_on_config_change_is_disallowed(
        ) -> None:
    changes = diff(_config(), _config('<add name="A" queueLength="50" />\n<add name="B" />'))
    assert changes.pool_changes == (PoolChange("A", ("queue_length",), recycle=True),)
    keep = '<recycling disallowRotationOnConfigChange="true" />'
    old = _config(f'<add name="A">{keep}</add>\n<add name="B" />')
    new = _config(f'<add name="A" queueLength="50">{keep}</add>\n<add name="B" />')
    assert diff(old, new).pool_changes == (PoolChange("A", ("queue_length",), recycle=False),)
    assert diff(old, new).pools_changed == ("A",) and diff(old, new).pools_to_recycle == ()
    new_app = _config(f'<add name="A">{keep}</add>\n<add name="B" />', a_extra='interface="wsgi"')
    assert diff(old, new_app).pools_to_recycle == ("A",)  # workers load applications at start


def test_pools_added_and_removed_are_named() -> None:
    changes = diff(_config(), _config(POOLS + '\n<add name="C" />'))
    assert (changes.pools_added, changes.pools_removed, changes.pools_changed) == (
        ("C",), (), ())
    assert diff(_config(POOLS + '\n<add name="C" />'), _config()).pools_removed == ("C",)


def test_moving_an_application_to_another_pool_changes_routing_and_both_pools() -> None:
    old = _config()
    new = loads(document(POOLS, site(apps='<application path="/" applicationPool="B" '
                                          'app="a:app" />', binding="*:8080:one").replace(
        'name="s"', 'name="one"')))
    changes = diff(old, new)
    assert changes.routing_changed
    assert set(changes.pools_changed) == {"A", "B"}
    assert changes.sites_removed == ("two",)


def test_the_summary_lists_sites_applications_and_pools() -> None:
    root = Path(__file__).resolve().parent.parent
    text = summary(load(root / "examples" / "multisite.config"))
    assert text.startswith("3 sites, 4 applications, 2 pools")
    assert "Demo (id 1): http 127.0.0.1:8080:demo.example.test" in text
    assert "/testapp  -> AppsPool: testapp:application" in text
    assert "DemoPool: 2 workers x 8 threads, queue 1000, identity ApplicationPoolIdentity" in text
    assert "recycle at 03:00:00" in text
