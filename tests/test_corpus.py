"""Replay the hostile-document corpus through the real command line.

Each case in tests/corpus/manifest.yml is served from an HTTP server on 127.0.0.1 and
scraped with `python -m ringtracker scrape` in a git repository that already contains a good
data/agencies.json and a ring.db built from it. A rejected case must exit non-zero with
the expected message and leave both files byte-for-byte as they were; an accepted case
must write exactly the expected records.
"""

import gzip
import importlib.util
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Response

from ringtracker.build import build
from ringtracker.fetch import DEFAULT_MAX_BYTES
from ringtracker.write import serialize
from tests.helpers_scrape import KML_TYPE, KMZ_TYPE, git, make_git_repo, run_scrape

CORPUS = Path(__file__).parent / "corpus"
MANIFEST = yaml.safe_load((CORPUS / "manifest.yml").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]
OUTPUT = "data/agencies.json"
CHUNK = b"\0" * (1024 * 1024)
OVERSIZE_CHUNKS = DEFAULT_MAX_BYTES // len(CHUNK) + 2


def corpus_bytes(name: str, base: str) -> bytes:
    data = (CORPUS / name).read_bytes()
    return data.replace(b"{{BASE}}", base.encode("ascii"))


def zeros(chunks: int):
    for _ in range(chunks):
        yield CHUNK


def build_kmz(entries: dict, base: str) -> bytes:
    """Build the archive a manifest case describes; entry names are written as given."""
    if "raw" in entries:
        return entries["raw"].encode("latin-1")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, spec in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as entry:
                if "file" in spec:
                    entry.write(corpus_bytes(spec["file"], base))
                elif "text" in spec:
                    entry.write(spec["text"].encode("utf-8"))
                else:
                    block = b" " * (1024 * 1024)
                    remaining = spec["spaces"]
                    while remaining > 0:
                        entry.write(block[:remaining])
                        remaining -= len(block)
    return buffer.getvalue()


def generated_response(kind: str) -> Response:
    if kind == "oversize-length":
        size = OVERSIZE_CHUNKS * len(CHUNK)
        return Response(zeros(OVERSIZE_CHUNKS), content_type=KML_TYPE, headers={"Content-Length": str(size)})
    if kind == "oversize-chunked":
        return Response(zeros(OVERSIZE_CHUNKS), content_type=KML_TYPE)
    if kind == "gzip-bomb":
        # About 50 KB on the wire that inflates past the cap.
        body = gzip.compress(b"".join(zeros(OVERSIZE_CHUNKS)), compresslevel=9)
        return Response(body, content_type=KML_TYPE, headers={"Content-Encoding": "gzip"})
    raise ValueError(f"unknown generated body {kind!r} in the manifest")


def case_path(case: dict) -> str:
    if "document" in case:
        # Served at its own name, so a NetworkLink to {{BASE}}/NAME can point at itself.
        if "content_type" not in case:
            return "/" + case["document"]
        return f"/case/{case['id']}/{case['document']}"
    if "kmz" in case:
        return f"/case/{case['id']}/map.kmz"
    return f"/case/{case['id']}/generated.kml"


@pytest.fixture(scope="module")
def corpus_server(loopback_server):
    """Serve every corpus file at /NAME and every case at /case/ID/..., for the whole module."""
    base = loopback_server.url_for("/").rstrip("/")
    for path in sorted(CORPUS.iterdir()):
        loopback_server.expect_request("/" + path.name).respond_with_data(corpus_bytes(path.name, base), content_type=KML_TYPE)
    for case in CASES:
        path = case_path(case)
        if "document" in case:
            if "content_type" not in case:
                continue
            body = corpus_bytes(case["document"], base)
            loopback_server.expect_request(path).respond_with_data(body, content_type=case.get("content_type", KML_TYPE))
        elif "kmz" in case:
            body = build_kmz(case["kmz"], base)
            loopback_server.expect_request(path).respond_with_data(body, content_type=KMZ_TYPE)
        else:
            kind = case["generate"]
            loopback_server.expect_request(path).respond_with_handler(lambda request, kind=kind: generated_response(kind))
    return loopback_server


@pytest.fixture(scope="module")
def loopback_server():
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def good_repository(tmp_path_factory):
    """A git repository with the previous snapshot committed and ring.db built from it."""
    repo = make_git_repo(tmp_path_factory.mktemp("corpus") / "tracker")
    (repo / "data").mkdir()
    (repo / OUTPUT).write_bytes(serialize(MANIFEST["previous"]))
    git(repo, "add", OUTPUT)
    git(repo, "commit", "--quiet", "-m", "Previous good snapshot")
    build(repo, repo / "ring.db")
    return repo


@pytest.fixture
def repository(good_repository, tmp_path):
    copy = tmp_path / "tracker"
    shutil.copytree(good_repository, copy, symlinks=True)
    return copy


def test_manifest_is_big_and_complete():
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)
    for case in CASES:
        assert ("reject" in case) != ("records" in case), case["id"]
        assert sum(key in case for key in ("document", "kmz", "generate")) == 1, case["id"]
    listed = {case["document"] for case in CASES if "document" in case}
    unused = {path.name for path in CORPUS.iterdir()} - listed - {"manifest.yml", "baseline.kml", "networklink-loop-b.kml", "networklink-chain-2.kml"}
    assert unused == set()


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_corpus_case(case, corpus_server, repository, good_repository):
    url = corpus_server.url_for(case_path(case))
    data_before = (good_repository / OUTPUT).read_bytes()
    db_before = (good_repository / "ring.db").read_bytes()

    completed = run_scrape(repository, "--url", url, "--output", OUTPUT, "--retries", "0", "--timeout", "20")

    if "reject" in case:
        assert completed.returncode != 0, completed.stderr
        assert case["reject"] in completed.stderr, completed.stderr
        assert "Traceback" not in completed.stderr
        assert (repository / OUTPUT).read_bytes() == data_before
        assert sorted(path.name for path in (repository / "data").iterdir()) == ["agencies.json"]
    else:
        assert completed.returncode == 0, completed.stderr
        assert (repository / OUTPUT).read_bytes() == serialize(case["records"])
    assert (repository / "ring.db").read_bytes() == db_before


# The fuzz target, run briefly so `make test` keeps it working.

FUZZ_TARGET = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_kml.py"


def test_fuzz_target_accepts_every_corpus_document():
    atheris = pytest.importorskip("atheris")  # noqa: F841 (the target imports it)
    spec = importlib.util.spec_from_file_location("fuzz_kml", FUZZ_TARGET)
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    inputs = [path.read_bytes() for folder in (CORPUS, CORPUS.parent / "captures") for path in sorted(folder.iterdir())]
    inputs += [build_kmz(case["kmz"], "http://127.0.0.1:9") for case in CASES if "kmz" in case and "spaces" not in str(case["kmz"])]

    for data in inputs:
        target.test_one_input(data)


def test_fuzz_smoke_run(tmp_path):
    pytest.importorskip("atheris")
    completed = subprocess.run(
        [sys.executable, str(FUZZ_TARGET), "-runs=3000", "-seed=1", f"-artifact_prefix={tmp_path}/", str(tmp_path), str(CORPUS)],
        capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Done 3000 runs" in completed.stderr
