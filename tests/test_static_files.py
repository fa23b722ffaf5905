"""Which requests are files, and which files are never served (listener/static.py).

Real files and symbolic links in tmp_path; paths go through urls.py first, as in the
listener, so every traversal attempt is tried the way a client would send it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config_documents import document
from webgarden.config import loads
from webgarden.config.model import ApplicationConfig, VirtualDirectoryConfig
from webgarden.config.webserver import WebServerConfig
from webgarden.listener.static import (
    BAD_PATH,
    DIRECTORY_LISTING_DENIED,
    EXTENSION_DENIED,
    HIDDEN_NAMESPACE,
    MIME_UNKNOWN,
    NOT_FOUND,
    FileChanged,
    FileTarget,
    Listing,
    Redirect,
    StaticRules,
    file_headers,
    file_stamp,
    open_file,
    physical_root,
    protect,
    render_listing,
    resolve,
)
from webgarden.listener.urls import InvalidURL, split_target


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    files = {
        "logo.png": b"PNG", "style.css": b"body{}", "app.py": b"SECRET = 1",
        "settings.toml": b"[db]", "local.db": b"db", ".env": b"KEY=1",
        ".git/config": b"[core]", "__pycache__/app.cpython-311.png": b"x",
        "bin/tool.png": b"x", "App_Data/x.png": b"x", "venv/lib.png": b"x",
        "docs/index.html": b"<h1>docs</h1>", "docs/page.html": b"page",
        "sub/a.txt": b"a", "sub/b.py": b"b", "sub/.hidden.txt": b"h", "sub/inner/c.txt": b"c",
        "README": b"readme", "data.xyz": b"?", ".well-known/security.txt": b"Contact: x",
        ".well-known/.secret.txt": b"s", "a b/index.html": b"space", "caf\u00e9.png": b"u",
    }
    for name, data in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "secret.txt").write_bytes(b"outside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.txt").write_bytes(b"outside")
    return site


def app_for(physical: Path | str, path: str = "/", vdirs: tuple[tuple[str, str], ...] = ()
            ) -> ApplicationConfig:
    dirs = vdirs or (("/", str(physical)),)
    return ApplicationConfig(path, "P", "m:app", virtual_directories=tuple(
        VirtualDirectoryConfig(p, physical_path=d) for p, d in dirs))


def get(root: Path, target: bytes, *, rules: StaticRules | None = None, method: str = "GET",
        app: ApplicationConfig | None = None, script_name: str = "") -> object:
    path = split_target(target).path
    app = app or app_for(root)
    path_in_app = path[len(script_name):] if script_name else path
    return resolve(rules or StaticRules(WebServerConfig()), app, script_name, path_in_app,
                   method)


def test_an_existing_file_is_served_with_its_type_and_validators(root: Path) -> None:
    target = get(root, b"/logo.png")
    assert isinstance(target, FileTarget)
    st = os.stat(root / "logo.png")
    assert (target.real_path, target.size, target.content_type) == (
        str(root / "logo.png"), 3, "image/png")
    assert (target.inode, target.mtime_ns, target.device) == (
        st.st_ino, st.st_mtime_ns, st.st_dev)
    assert target.etag == f'"{st.st_ino:x}-3-{st.st_mtime_ns:x}"'
    assert target.last_modified == st.st_mtime_ns // 10**9
    assert not target.default_document
    assert isinstance(get(root, b"/logo.png", method="HEAD"), FileTarget)


def test_what_does_not_exist_and_other_methods_go_to_the_application(root: Path) -> None:
    assert get(root, b"/missing.png") is None
    assert get(root, b"/api/users") is None
    assert get(root, b"/logo.png", method="POST") is None
    assert get(root, b"/logo.png/") is None  # a file is not a directory


def test_an_application_without_a_physical_path_serves_no_files(root: Path) -> None:
    app = ApplicationConfig("/", "P", "m:app")
    assert get(root, b"/logo.png", app=app) is None
    assert get(root, b"/logo.png", app=app_for(root, vdirs=(("/", ""),))) is None


def test_dot_dot_in_any_encoding_never_leaves_the_root(root: Path) -> None:
    for target in (b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2E%2E/secret.txt",
                   b"/..%2fsecret.txt", b"/..%5csecret.txt", b"/sub/../../secret.txt",
                   b"/%2e%2e%2f%2e%2e%2fsecret.txt"):
        try:
            outcome = get(root, target)
        except InvalidURL:
            continue  # urls.py refuses to climb above the root: 400
        assert not isinstance(outcome, FileTarget), target
    # Decoded twice, a double-encoded dot segment would climb: refused.
    assert get(root, b"/sub/%252e%252e/%252e%252e/secret.txt") == BAD_PATH
    assert get(root, b"/sub/%252fetc") == BAD_PATH


def test_backslashes_and_nul_are_refused(root: Path) -> None:
    app = app_for(root)
    rules = StaticRules(WebServerConfig())
    assert resolve(rules, app, "", "/sub\\..\\..\\secret.txt", "GET") == BAD_PATH
    assert resolve(rules, app, "", "/logo.png\x00.txt", "GET") == BAD_PATH
    assert resolve(rules, app, "", "/sub/%5c..%5csecret.txt", "GET") == BAD_PATH
    with pytest.raises(InvalidURL):
        split_target(b"/logo.png%00.txt")  # urls.py refuses it first


def test_a_symlink_escaping_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outdir").symlink_to(tmp_path / "outside")
    assert get(root, b"/escape.txt") == NOT_FOUND
    assert get(root, b"/outdir/x.txt") == NOT_FOUND
    assert get(root, b"/outdir/") == NOT_FOUND


def test_a_symlink_inside_the_root_is_followed_and_checked_by_its_real_name(
        root: Path) -> None:
    (root / "inside.css").symlink_to(root / "style.css")
    (root / "disguised.txt").symlink_to(root / "app.py")
    (root / "gitlink").symlink_to(root / ".git")
    (root / "loop.txt").symlink_to(root / "loop.txt")
    target = get(root, b"/inside.css")
    assert isinstance(target, FileTarget) and target.real_path == str(root / "style.css")
    assert get(root, b"/disguised.txt") == EXTENSION_DENIED
    assert get(root, b"/gitlink/config") == HIDDEN_NAMESPACE
    assert get(root, b"/loop.txt") is None


def test_a_physical_path_that_is_itself_a_symlink_works(root: Path, tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to(root)
    assert isinstance(get(root, b"/logo.png", app=app_for(tmp_path / "current")), FileTarget)


@pytest.mark.parametrize("target", [
    b"/bin/tool.png", b"/BIN/tool.png", b"/App_Data/x.png", b"/app_data/x.png",
    b"/__pycache__/app.cpython-311.png", b"/venv/lib.png", b"/web.config",
])
def test_hidden_segments_are_404_8(root: Path, target: bytes) -> None:
    assert get(root, target) == HIDDEN_NAMESPACE


@pytest.mark.parametrize("target", [
    b"/.env", b"/.git/config", b"/sub/.hidden.txt", b"/.well-known/.secret.txt",
    b"/.missing.png",
])
def test_dot_files_and_directories_are_never_served(root: Path, target: bytes) -> None:
    assert get(root, target) == HIDDEN_NAMESPACE


def test_well_known_is_the_one_dot_directory_served(root: Path) -> None:
    target = get(root, b"/.well-known/security.txt")
    assert isinstance(target, FileTarget) and target.content_type == "text/plain"


@pytest.mark.parametrize("target", [b"/app.py", b"/APP.PY", b"/settings.toml", b"/local.db",
                                    b"/sub/b.py", b"/nothing.pyc", b"/x.sqlite3"])
def test_denied_extensions_are_404_7_whether_or_not_the_file_exists(
        root: Path, target: bytes) -> None:
    assert get(root, target) == EXTENSION_DENIED


def test_an_extension_without_a_mime_type_is_404_3(root: Path) -> None:
    assert get(root, b"/data.xyz") == MIME_UNKNOWN
    assert get(root, b"/README") == MIME_UNKNOWN


def test_mime_map_entries_add_and_replace_types(root: Path) -> None:
    web = loads(document(root_extra="""<system.webServer><staticContent>
        <mimeMap fileExtension=".xyz" mimeType="application/x-xyz" />
        <mimeMap fileExtension="." mimeType="text/plain" />
        <mimeMap fileExtension=".PNG" mimeType="image/x-png" />
        <remove fileExtension=".css" />
      </staticContent></system.webServer>""")).web_server
    rules = StaticRules(web)
    assert get(root, b"/data.xyz", rules=rules).content_type == "application/x-xyz"  # type: ignore[attr-defined]
    assert get(root, b"/README", rules=rules).content_type == "text/plain"  # type: ignore[attr-defined]
    assert get(root, b"/logo.png", rules=rules).content_type == "image/x-png"  # type: ignore[attr-defined]
    assert get(root, b"/style.css", rules=rules) == MIME_UNKNOWN


def test_the_configuration_file_is_never_served(root: Path) -> None:
    (root / "webgarden.xml").write_text(document())
    (root / "applicationHost.config").write_text(document())
    rules = StaticRules(WebServerConfig(), protected=protect([str(root / "webgarden.xml")]))
    assert get(root, b"/webgarden.xml", rules=rules) == NOT_FOUND
    (root / "alias.xml").symlink_to(root / "webgarden.xml")
    assert get(root, b"/alias.xml", rules=rules) == NOT_FOUND
    assert get(root, b"/applicationHost.config", rules=rules) == EXTENSION_DENIED
    assert isinstance(get(root, b"/webgarden.xml"), FileTarget)  # unprotected, it would be


def test_special_files_are_never_opened(root: Path) -> None:
    os.mkfifo(root / "pipe.txt")
    assert get(root, b"/pipe.txt") == NOT_FOUND


def test_a_directory_without_its_slash_is_redirected_to_it(root: Path) -> None:
    assert get(root, b"/docs") == Redirect("/docs/")
    assert get(root, b"/sub") == Redirect("/sub/")
    assert get(root, b"/a%20b") == Redirect("/a%20b/")


def test_a_directory_serves_its_default_document(root: Path) -> None:
    target = get(root, b"/docs/")
    assert isinstance(target, FileTarget)
    assert target.real_path == str(root / "docs" / "index.html") and target.default_document
    assert target.content_type == "text/html"


def test_default_documents_are_tried_in_order(root: Path) -> None:
    (root / "docs" / "Default.htm").write_bytes(b"first")
    target = get(root, b"/docs/")
    assert isinstance(target, FileTarget) and target.real_path.endswith("Default.htm")


def test_default_documents_can_be_replaced_or_turned_off(root: Path) -> None:
    web = loads(document(root_extra="""<system.webServer><defaultDocument>
        <files><clear /><add value="page.html" /></files></defaultDocument></system.webServer>"""
                         )).web_server
    target = get(root, b"/docs/", rules=StaticRules(web))
    assert isinstance(target, FileTarget) and target.real_path.endswith("page.html")
    off = loads(document(root_extra='<system.webServer><defaultDocument enabled="false" />'
                                    "</system.webServer>")).web_server
    assert get(root, b"/docs/", rules=StaticRules(off)) == DIRECTORY_LISTING_DENIED


def test_a_default_document_that_is_a_denied_file_is_not_used(root: Path) -> None:
    web = loads(document(root_extra="""<system.webServer><defaultDocument>
        <files><clear /><add value="b.py" /></files></defaultDocument></system.webServer>"""
                         )).web_server
    assert get(root, b"/sub/", rules=StaticRules(web)) == DIRECTORY_LISTING_DENIED


def test_a_directory_without_default_document_is_403_14(root: Path) -> None:
    assert get(root, b"/sub/") == DIRECTORY_LISTING_DENIED
    assert get(root, b"/sub/inner/") == DIRECTORY_LISTING_DENIED


def test_the_application_root_without_default_document_goes_to_the_application(
        root: Path) -> None:
    assert get(root, b"/") is None
    (root / "index.html").write_bytes(b"home")
    target = get(root, b"/")
    assert isinstance(target, FileTarget) and target.default_document


def test_an_application_below_the_root_maps_its_own_path(root: Path) -> None:
    app = app_for(root, path="/shop")
    assert get(root, b"/shop", app=app, script_name="/shop") is None  # its root: the app's
    target = get(root, b"/shop/logo.png", app=app, script_name="/shop")
    assert isinstance(target, FileTarget) and target.real_path == str(root / "logo.png")
    assert get(root, b"/shop/docs", app=app, script_name="/shop") == Redirect("/shop/docs/")


def test_virtual_directories_map_by_longest_whole_segment_prefix(root: Path,
                                                                 tmp_path: Path) -> None:
    app = app_for(root, vdirs=(("/", str(root)), ("/assets", str(root / "docs"))))
    target = get(root, b"/assets/page.html", app=app)
    assert isinstance(target, FileTarget) and target.real_path == str(root / "docs/page.html")
    assert get(root, b"/assets/logo.png", app=app) is None  # not in docs/
    assert physical_root(app, "/assetsx/logo.png") == (str(root), "/assetsx/logo.png")
    assert physical_root(app, "/assets") == (str(root / "docs"), "")
    only = app_for(root, vdirs=(("/static", str(root)),))
    assert physical_root(only, "/other") is None
    assert get(root, b"/static", app=only) == Redirect("/static/")


def test_non_ascii_names_are_found(root: Path) -> None:
    target = get(root, b"/caf%C3%A9.png")
    assert isinstance(target, FileTarget) and target.real_path.endswith("caf\u00e9.png")


def test_directory_browsing_lists_only_what_could_be_served(root: Path) -> None:
    web = loads(document(root_extra='<system.webServer><directoryBrowse enabled="true" />'
                                    "</system.webServer>")).web_server
    (root / "sub" / "link.txt").symlink_to(root.parent / "secret.txt")
    listing = get(root, b"/sub/", rules=StaticRules(web))
    assert isinstance(listing, Listing)
    assert [(e.name, e.is_dir) for e in listing.entries] == [("a.txt", False),
                                                             ("inner", True)]
    page = render_listing(listing).decode()
    assert '<A HREF="/sub/a.txt">a.txt</A>' in page and 'HREF="/sub/inner/"' in page
    assert "[To Parent Directory]" in page and "b.py" not in page and "hidden" not in page
    assert get(root, b"/sub", rules=StaticRules(web)) == Redirect("/sub/")


def test_listing_escapes_names(root: Path) -> None:
    web = loads(document(root_extra='<system.webServer><directoryBrowse enabled="true" />'
                                    "</system.webServer>")).web_server
    (root / "sub" / "<b>&.txt").write_bytes(b"x")
    listing = get(root, b"/sub/", rules=StaticRules(web))
    page = render_listing(listing).decode()  # type: ignore[arg-type]
    assert "&lt;b&gt;&amp;.txt" in page and "%3Cb%3E%26.txt" in page and "<b>&" not in page


def test_file_headers_describe_the_file_and_client_cache_settings(root: Path) -> None:
    web = loads(document(root_extra="""<system.webServer><staticContent>
        <clientCache cacheControlMode="UseMaxAge" cacheControlMaxAge="01:00:00"
                     cacheControlCustom="public" setEtag="false" />
      </staticContent></system.webServer>""")).web_server
    rules = StaticRules(web)
    target = get(root, b"/logo.png", rules=rules)
    assert isinstance(target, FileTarget) and target.etag is None
    headers = dict(file_headers(rules, target))
    assert headers["Content-Type"] == "image/png" and headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "max-age=3600, public" and "ETag" not in headers
    assert "Last-Modified" in headers


def test_open_file_opens_the_resolved_file_and_notices_a_change(root: Path) -> None:
    target = get(root, b"/style.css")
    assert isinstance(target, FileTarget)
    fd = open_file(target)
    try:
        assert os.read(fd, 100) == b"body{}"
    finally:
        os.close(fd)
    (root / "style.css").write_bytes(b"body{color:red}")
    with pytest.raises(FileChanged):
        open_file(target)


def test_open_file_does_not_follow_a_symlink_swapped_in(root: Path, tmp_path: Path) -> None:
    target = get(root, b"/style.css")
    assert isinstance(target, FileTarget)
    (root / "style.css").unlink()
    (root / "style.css").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(OSError):
        open_file(target)


def test_file_stamp_changes_with_the_file(root: Path) -> None:
    before = file_stamp(str(root / "style.css"))
    assert before is not None
    (root / "style.css").write_bytes(b"longer body")
    assert file_stamp(str(root / "style.css")) != before
    assert file_stamp(str(root / "gone.css")) is None
