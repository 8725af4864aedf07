"""Downloads against a real HTTP server on 127.0.0.1, and archive safety."""

import hashlib
import io
import random
import tarfile
import zipfile

import pytest

from vtg_data.fetch import FetchError, UnsafeArchiveError, download_url, extract_archive

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def test_interrupted_download_resumes_with_a_range_request(file_server, tmp_path):
    file_server.files["/big.bin"] = PAYLOAD
    file_server.cut_after["/big.bin"] = 300_000
    dest = tmp_path / "big.bin"
    download_url(f"{file_server.url}/big.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), backoff=0)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for path, r, _ in file_server.requests if path == "/big.bin"]
    assert ranges == [None, "bytes=300000-"]
    assert not (tmp_path / "big.bin.part").exists()


def test_partial_file_from_an_earlier_run_is_resumed(file_server, tmp_path):
    file_server.files["/big.bin"] = PAYLOAD
    (tmp_path / "big.bin.part").write_bytes(PAYLOAD[:1000])
    download_url(f"{file_server.url}/big.bin", tmp_path / "big.bin")
    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD
    assert file_server.requests[0][1] == "bytes=1000-"


def test_checksum_mismatch_is_rejected_and_leaves_no_file(file_server, tmp_path):
    file_server.files["/a.json"] = b'{"x": 1}'
    dest = tmp_path / "a.json"
    with pytest.raises(FetchError, match="checksum mismatch for a.json") as info:
        download_url(f"{file_server.url}/a.json", dest, sha256="0" * 64)
    assert "expected sha256 " + "0" * 64 in str(info.value)
    assert not dest.exists() and not (tmp_path / "a.json.part").exists()


def test_server_errors_are_retried_then_reported(file_server, tmp_path):
    file_server.files["/a.json"] = b"{}"
    file_server.fail_times["/a.json"] = 2
    download_url(f"{file_server.url}/a.json", tmp_path / "a.json", backoff=0)
    assert (tmp_path / "a.json").read_bytes() == b"{}"
    file_server.fail_times["/b.json"] = 10
    with pytest.raises(FetchError, match="giving up"):
        download_url(f"{file_server.url}/b.json", tmp_path / "b.json", retries=1, backoff=0)


def test_missing_file_is_a_clear_error(file_server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        download_url(f"{file_server.url}/nope.json", tmp_path / "nope.json")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar(entries: dict[str, bytes], mode="w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("bad_name", ["../escape.txt", "ok/../../escape.txt", "/abs/escape.txt"])
def test_archive_entries_that_escape_are_refused(tmp_path, kind, bad_name):
    entries = {"good.txt": b"fine", bad_name: b"evil"}
    archive = tmp_path / ("a.zip" if kind == "zip" else "a.tar.gz")
    archive.write_bytes(_zip(entries) if kind == "zip" else _tar(entries))
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        extract_archive(archive, target)
    assert not (tmp_path / "escape.txt").exists()
    assert list(target.rglob("*")) == []  # nothing, not even the good entry, is left behind


def test_tar_link_pointing_outside_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("videos/link.mp4")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../etc/passwd"
        archive.addfile(link)
    (tmp_path / "a.tar").write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArchiveError, match="links outside"):
        extract_archive(tmp_path / "a.tar", tmp_path / "out")


def test_split_tar_parts_are_extracted_as_one_archive(tmp_path):
    rng = random.Random(0)
    a, b = rng.randbytes(5000), rng.randbytes(7000)  # incompressible, so the archive has several parts
    data = _tar({"videos/a.mp4": a, "videos/b.mp4": b})
    parts = []
    for index, start in enumerate(range(0, len(data), 1500)):
        part = tmp_path / f"videos.tar.gz.{index:02d}"
        part.write_bytes(data[start : start + 1500])
        parts.append(part)
    assert len(parts) > 2
    written = extract_archive(parts, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "videos/a.mp4",
        "videos/b.mp4",
    ]
    assert (tmp_path / "out/videos/b.mp4").read_bytes() == b


def test_truncated_archive_is_reported(tmp_path):
    data = _tar({"a.txt": b"x" * 100_000})
    (tmp_path / "a.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FetchError, match="corrupt or truncated"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
