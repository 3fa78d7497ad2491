import socket
import time

import pytest
from werkzeug import Response

from ringtracker.errors import FetchError, ScrapeError, SourceError
from ringtracker.fetch import FetchOptions, fetch, user_agent
from ringtracker.kml import parse
from tests.helpers_scrape import (  # noqa: F401 (fixtures)
    KML_TYPE,
    KMZ_TYPE,
    PROXY_VARIABLES,
    httpserver,
    loopback_server,
    make_kmz,
    read_capture,
)

TARGET_PATH = "/maps/d/kml"
TARGET_QUERY = "forcekml=1&mid=1FakeMapIdForTests"
FAST = FetchOptions(connect_timeout=2, read_timeout=5, retries=2, backoff_factor=0)


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)


def server_root(httpserver):
    return httpserver.url_for("/").rstrip("/")


def serve_wrapper_and_target(httpserver):
    wrapper = read_capture("wrapper.kml", SERVER=server_root(httpserver))
    httpserver.expect_request("/wrapper.kml").respond_with_data(wrapper, content_type=KML_TYPE)
    httpserver.expect_request(TARGET_PATH, query_string=TARGET_QUERY).respond_with_data(
        read_capture("map-2021.kml"), content_type=KML_TYPE
    )


def test_fetch_direct_kml(httpserver):
    kml = read_capture("map-2020-direct.kml")
    httpserver.expect_request("/map.kml").respond_with_data(kml, content_type=KML_TYPE)

    assert fetch(httpserver.url_for("/map.kml"), FAST) == kml


def test_fetch_follows_network_link_once(httpserver):
    serve_wrapper_and_target(httpserver)

    data = fetch(httpserver.url_for("/wrapper.kml"), FAST)

    assert data == read_capture("map-2021.kml")
    assert [request.path for request, _ in httpserver.log] == ["/wrapper.kml", TARGET_PATH]


def test_fetch_sends_project_user_agent(httpserver, monkeypatch):
    monkeypatch.setenv("GITHUB_REPOSITORY", "example/ring-tracker")
    httpserver.expect_request("/map.kml").respond_with_data(read_capture("map-2021.kml"), content_type=KML_TYPE)

    fetch(httpserver.url_for("/map.kml"), FAST)

    agent = httpserver.log[0][0].headers["User-Agent"]
    assert agent == user_agent()
    assert agent.startswith("ring-partnership-tracker/")
    assert agent.endswith(" (+https://github.com/example/ring-tracker)")


def test_user_agent_without_repository():
    assert "github.com" not in user_agent()


def test_fetch_kmz(httpserver):
    kmz = make_kmz(read_capture("map-2021.kml"))
    httpserver.expect_request("/map.kmz").respond_with_data(kmz, content_type=KMZ_TYPE)

    data = fetch(httpserver.url_for("/map.kmz"), FAST)

    assert data == kmz
    assert len(parse(data)) == 5


def test_wrapper_pointing_at_itself_rejected(httpserver):
    url = httpserver.url_for("/self.kml")
    httpserver.expect_request("/self.kml").respond_with_data(read_capture("wrapper-self.kml", SELF=url), content_type=KML_TYPE)

    with pytest.raises(SourceError, match="points back at the document itself"):
        fetch(url, FAST)
    assert len(httpserver.log) == 1


def test_wrapper_pointing_at_wrapper_rejected(httpserver):
    wrapper = read_capture("wrapper.kml", SERVER=server_root(httpserver))
    httpserver.expect_request("/wrapper.kml").respond_with_data(wrapper, content_type=KML_TYPE)
    httpserver.expect_request(TARGET_PATH).respond_with_data(wrapper, content_type=KML_TYPE)

    with pytest.raises(SourceError, match="another NetworkLink wrapper"):
        fetch(httpserver.url_for("/wrapper.kml"), FAST)
    assert len(httpserver.log) == 2


def test_remote_wrapper_to_local_file_rejected(httpserver, tmp_path):
    secret = tmp_path / "secret.kml"
    secret.write_bytes(read_capture("map-2021.kml"))
    wrapper = read_capture("wrapper-file.kml", LOCAL_PATH=str(secret))
    httpserver.expect_request("/wrapper.kml").respond_with_data(wrapper, content_type=KML_TYPE)

    with pytest.raises(SourceError, match="only http and https links are followed from a remote document"):
        fetch(httpserver.url_for("/wrapper.kml"), FAST)


def test_remote_wrapper_to_ftp_rejected(httpserver):
    wrapper = read_capture("wrapper.kml", SERVER="ftp://127.0.0.1")
    httpserver.expect_request("/wrapper.kml").respond_with_data(wrapper, content_type=KML_TYPE)

    with pytest.raises(SourceError, match="'ftp://127.0.0.1/maps/d/kml"):
        fetch(httpserver.url_for("/wrapper.kml"), FAST)


def test_wrapper_with_relative_link(httpserver):
    wrapper = read_capture("wrapper.kml", SERVER="").replace(b"/maps/d/kml?", b"maps/d/kml?")
    httpserver.expect_request("/wrapper.kml").respond_with_data(wrapper, content_type=KML_TYPE)
    httpserver.expect_request(TARGET_PATH, query_string=TARGET_QUERY).respond_with_data(
        read_capture("map-2021.kml"), content_type=KML_TYPE
    )

    assert fetch(httpserver.url_for("/wrapper.kml"), FAST) == read_capture("map-2021.kml")


def test_local_wrapper_to_local_file(tmp_path):
    target = tmp_path / "archive" / "map.kml"
    target.parent.mkdir()
    target.write_bytes(read_capture("map-2021.kml"))
    wrapper = tmp_path / "archive" / "wrapper.kml"
    wrapper.write_bytes(read_capture("wrapper-file.kml", LOCAL_PATH=str(target)))

    assert fetch(str(wrapper), FAST) == target.read_bytes()


def test_local_path_and_file_url(tmp_path):
    path = tmp_path / "map 2020.kml"
    path.write_bytes(read_capture("map-2020-direct.kml"))

    assert fetch(str(path), FAST) == path.read_bytes()
    assert fetch(path.as_uri(), FAST) == path.read_bytes()


def test_missing_local_file_rejected(tmp_path):
    with pytest.raises(FetchError, match="File not found: .*missing.kml"):
        fetch(str(tmp_path / "missing.kml"), FAST)


def test_file_url_with_remote_host_rejected():
    with pytest.raises(FetchError, match="names host 'fileserver'"):
        fetch("file://fileserver/share/map.kml", FAST)


def test_unsupported_scheme_rejected():
    with pytest.raises(FetchError, match="Unsupported URL scheme 'ftp'"):
        fetch("ftp://127.0.0.1/map.kml", FAST)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json"])
def test_rejected_content_types(httpserver, content_type):
    httpserver.expect_request("/map.kml").respond_with_data(read_capture("map-2021.kml"), content_type=content_type)

    with pytest.raises(FetchError, match=f"Content-Type '{content_type.split(';')[0]}' instead of KML"):
        fetch(httpserver.url_for("/map.kml"), FAST)


def test_html_error_page_with_status_200_rejected(httpserver):
    httpserver.expect_request("/map.kml").respond_with_data(read_capture("error-page.html"), content_type=KML_TYPE)

    with pytest.raises(FetchError, match="returned an HTML page instead of KML"):
        fetch(httpserver.url_for("/map.kml"), FAST)


def test_json_body_rejected(httpserver):
    httpserver.expect_request("/map.kml").respond_with_data(b'{"error": "quota"}', content_type="text/plain")

    with pytest.raises(FetchError, match="returned JSON"):
        fetch(httpserver.url_for("/map.kml"), FAST)


def test_empty_body_rejected(httpserver):
    httpserver.expect_request("/map.kml").respond_with_data(b"", content_type=KML_TYPE)

    with pytest.raises(FetchError, match="returned an empty document"):
        fetch(httpserver.url_for("/map.kml"), FAST)


def test_http_500_then_success_retries(httpserver):
    httpserver.expect_oneshot_request("/map.kml").respond_with_data("busy", status=500)
    httpserver.expect_request("/map.kml").respond_with_data(read_capture("map-2021.kml"), content_type=KML_TYPE)

    assert fetch(httpserver.url_for("/map.kml"), FAST) == read_capture("map-2021.kml")
    assert [response.status_code for _, response in httpserver.log] == [500, 200]


def test_http_500_gives_up_after_retries(httpserver):
    httpserver.expect_request("/map.kml").respond_with_data("broken", status=500)

    with pytest.raises(FetchError, match=r"127.0.0.1:\d+/map.kml returned HTTP 500 INTERNAL SERVER ERROR after 2 retries"):
        fetch(httpserver.url_for("/map.kml"), FAST)
    assert len(httpserver.log) == 3


def test_http_429_honours_retry_after(httpserver):
    httpserver.expect_oneshot_request("/map.kml").respond_with_data("slow down", status=429, headers={"Retry-After": "1"})
    httpserver.expect_request("/map.kml").respond_with_data(read_capture("map-2021.kml"), content_type=KML_TYPE)

    started = time.monotonic()
    fetch(httpserver.url_for("/map.kml"), FAST)

    assert time.monotonic() - started >= 1.0
    assert len(httpserver.log) == 2


def test_retry_after_capped(httpserver):
    httpserver.expect_oneshot_request("/map.kml").respond_with_data("later", status=503, headers={"Retry-After": "3600"})
    httpserver.expect_request("/map.kml").respond_with_data(read_capture("map-2021.kml"), content_type=KML_TYPE)
    options = FetchOptions(connect_timeout=2, read_timeout=5, retries=1, backoff_factor=0, max_retry_after=0.2)

    started = time.monotonic()
    fetch(httpserver.url_for("/map.kml"), options)

    assert time.monotonic() - started < 5


def test_http_404_not_retried(httpserver):
    httpserver.expect_request("/map.kml").respond_with_data("gone", status=404)

    with pytest.raises(FetchError, match="returned HTTP 404"):
        fetch(httpserver.url_for("/map.kml"), FAST)
    assert len(httpserver.log) == 1


def test_read_timeout(httpserver):
    def slow(request):
        time.sleep(1.0)
        return Response(read_capture("map-2021.kml"), content_type=KML_TYPE)

    httpserver.expect_request("/map.kml").respond_with_handler(slow)
    options = FetchOptions(connect_timeout=1, read_timeout=0.2, retries=0, backoff_factor=0)

    with pytest.raises(FetchError, match="Timed out fetching .*read timeout 0.2 s"):
        fetch(httpserver.url_for("/map.kml"), options)


def test_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = FetchOptions(connect_timeout=1, read_timeout=1, retries=1, backoff_factor=0)

    with pytest.raises(FetchError, match=f"Cannot connect to http://127.0.0.1:{port}/map.kml \\(1 retries\\): .*refused"):
        fetch(f"http://127.0.0.1:{port}/map.kml", options)


def test_size_cap_by_content_length(httpserver):
    httpserver.expect_request("/map.kml").respond_with_data(b"<kml>" + b" " * 5000 + b"</kml>", content_type=KML_TYPE)
    options = FetchOptions(retries=0, max_bytes=1000)

    with pytest.raises(FetchError, match="announces 5,011 bytes .* limit of 1,000 bytes"):
        fetch(httpserver.url_for("/map.kml"), options)


def test_size_cap_while_streaming(httpserver):
    def endless(request):
        chunks = (b"<Placemark/>" * 100 for _ in range(100))
        return Response(chunks, content_type=KML_TYPE)

    httpserver.expect_request("/map.kml").respond_with_handler(endless)
    options = FetchOptions(retries=0, max_bytes=10_000)

    with pytest.raises(FetchError, match="sent more than the limit of 10,000 bytes"):
        fetch(httpserver.url_for("/map.kml"), options)


def test_size_cap_for_local_file(tmp_path):
    path = tmp_path / "big.kml"
    path.write_bytes(b" " * 2000)

    with pytest.raises(FetchError, match="2,000 bytes, more than the limit of 1,000"):
        fetch(str(path), FetchOptions(max_bytes=1000))


def test_fetch_errors_are_scrape_errors():
    assert issubclass(FetchError, ScrapeError)
    assert issubclass(SourceError, ScrapeError)
