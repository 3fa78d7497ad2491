"""The response cache and compression in plugins/response_cache.py, through Datasette's own client."""

from __future__ import annotations

import asyncio

import pytest
from datasette.app import Datasette

from tests.site_db import build_site_db
from tests.test_site import ROOT, SETTINGS, load_metadata, started_site

pytestmark = pytest.mark.asyncio

GZIP = {"accept-encoding": "gzip"}
PLAIN = {"accept-encoding": "identity"}


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return build_site_db(tmp_path_factory.mktemp("cache") / "ring.db")


def with_cache_settings(**settings) -> dict:
    metadata = load_metadata()
    metadata.setdefault("plugins", {})["ring-response-cache"] = settings
    return metadata


async def cache_status(datasette, path, headers=None):
    response = await datasette.client.get(path, headers=headers or PLAIN)
    return response.status_code, response.headers.get("x-ring-cache")


async def test_second_request_is_a_hit(db_path):
    datasette = await started_site(db_path)
    first = await datasette.client.get("/", headers=PLAIN)
    second = await datasette.client.get("/", headers=PLAIN)
    assert first.headers["x-ring-cache"] == "miss"
    assert second.headers["x-ring-cache"] == "hit"
    assert second.status_code == 200
    assert second.text == first.text
    assert second.headers["content-type"] == first.headers["content-type"]


async def test_query_string_is_part_of_the_key(db_path):
    datasette = await started_site(db_path)
    assert await cache_status(datasette, "/ring/agencies?state=AL") == (200, "miss")
    assert await cache_status(datasette, "/ring/agencies?state=CA") == (200, "miss")
    assert await cache_status(datasette, "/ring/agencies?state=AL") == (200, "hit")


@pytest.mark.parametrize("headers", [
    {"cookie": "ds_actor=x"},
    {"authorization": "Bearer x"},
    {"cache-control": "no-cache"},
    {"pragma": "no-cache"},
])
async def test_private_or_uncached_requests_bypass(db_path, headers):
    datasette = await started_site(db_path)
    await datasette.client.get("/", headers=PLAIN)
    assert await cache_status(datasette, "/", {**PLAIN, **headers}) == (200, "bypass")


async def test_errors_are_not_kept(db_path):
    datasette = await started_site(db_path)
    assert await cache_status(datasette, "/ring/no_such_table") == (404, "miss")
    assert await cache_status(datasette, "/ring/no_such_table") == (404, "miss")


async def test_mutable_database_bypasses(db_path, tmp_path):
    copy = tmp_path / "ring.db"
    copy.write_bytes(db_path.read_bytes())
    datasette = Datasette(
        [str(copy)],
        metadata=load_metadata(),
        template_dir=str(ROOT / "templates"),
        plugins_dir=str(ROOT / "plugins"),
        settings=SETTINGS,
    )
    await datasette.invoke_startup()
    assert await cache_status(datasette, "/ring/agencies") == (200, "bypass")
    assert await cache_status(datasette, "/ring/agencies") == (200, "bypass")


async def test_entries_expire(db_path):
    datasette = await started_site(db_path, with_cache_settings(ttl_seconds=0.2))
    assert await cache_status(datasette, "/about") == (200, "miss")
    assert await cache_status(datasette, "/about") == (200, "hit")
    await asyncio.sleep(0.3)
    assert await cache_status(datasette, "/about") == (200, "miss")


async def test_large_responses_are_not_kept(db_path):
    # 0.0001 MB allows entries of 13 bytes, smaller than any page.
    datasette = await started_site(db_path, with_cache_settings(max_megabytes=0.0001))
    assert await cache_status(datasette, "/about") == (200, "miss")
    assert await cache_status(datasette, "/about") == (200, "miss")


async def test_size_limit_evicts_oldest(db_path):
    datasette = await started_site(db_path)
    size = len((await datasette.client.get("/about?n=0", headers=PLAIN)).content)
    # Eight copies of the page fit and a ninth evicts the least recently used.
    # The limit is 8.5 pages, so one entry (an eighth of it) may hold a page.
    limit = with_cache_settings(max_megabytes=size * 8.5 / 2**20)
    datasette = await started_site(db_path, limit)
    for n in range(9):
        assert await cache_status(datasette, f"/about?n={n}") == (200, "miss")
    assert await cache_status(datasette, "/about?n=8") == (200, "hit")
    assert await cache_status(datasette, "/about?n=1") == (200, "hit")
    assert await cache_status(datasette, "/about?n=0") == (200, "miss")


async def test_disabled_by_zero_ttl(db_path):
    datasette = await started_site(db_path, with_cache_settings(ttl_seconds=0))
    for _ in range(2):
        response = await datasette.client.get("/about", headers=PLAIN)
        assert "x-ring-cache" not in response.headers


async def test_gzip_for_clients_that_accept_it(db_path):
    datasette = await started_site(db_path)
    plain = await datasette.client.get("/", headers=PLAIN)
    for expected in ("miss", "hit"):
        response = await datasette.client.get("/", headers=GZIP)
        assert response.headers["x-ring-cache"] == expected
        assert response.headers["content-encoding"] == "gzip"
        assert response.text == plain.text
        assert int(response.headers["content-length"]) < len(plain.content) / 2
    assert "content-encoding" not in plain.headers
    assert (await datasette.client.get("/", headers=PLAIN)).headers["x-ring-cache"] == "hit"
