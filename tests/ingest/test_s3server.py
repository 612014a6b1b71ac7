"""The loopback S3 server the data-plane tests rely on works with s3fs, and only on 127.0.0.1."""

from __future__ import annotations


def test_roundtrip_and_ranged_read(s3):
    bucket = s3.make_bucket("roundtrip")
    fs = s3.filesystem()
    fs.pipe(f"{bucket}/a/b.bin", bytes(range(256)) * 4)
    assert fs.cat_file(f"{bucket}/a/b.bin", start=10, end=20) == bytes(range(10, 20))
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
