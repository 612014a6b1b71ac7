"""Storage: URL expansion, redaction, and the retry policy against a real S3 server behind a fault proxy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tv3s.local_s3 import SECRET_KEY
from tv3s.pipeline.storage import RetryPolicy, StorageError, Store, classify, redact_text, redact_url
from tv3s.schemas.errors import ErrorKind

from ..support.faultproxy import fault_proxy

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
BLOB = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def bucket(s3):
    url = s3.make_bucket("storage-tests")
    fs = s3.filesystem()
    fs.pipe(f"{url}/blob.bin", BLOB)
    for i in range(3):
        fs.pipe(f"{url}/shards/s-{i}.tar", b"x")
    return url


@pytest.fixture(scope="module")
def proxy(s3):
    with fault_proxy(s3.endpoint_url, stall_seconds=2.0) as p:
        yield p


def proxied_store(s3, proxy, policy: RetryPolicy = FAST) -> Store:
    options = {
        **s3.storage_options,
        "client_kwargs": {"endpoint_url": proxy.url},
        "config_kwargs": {"read_timeout": 0.5, "connect_timeout": 1},
    }
    proxy.clear()
    return Store(options, policy, seed=0)


def test_redaction_removes_user_info_and_presigned_queries():
    assert redact_url("https://user:pw@host:9000/b/k.tar?X-Amz-Signature=abc") == "https://host:9000/b/k.tar"
    assert redact_url("s3://bucket/key.tar") == "s3://bucket/key.tar"
    assert redact_url("/local/path.tar") == "/local/path.tar"
    assert "pw" not in redact_text("failed for https://user:pw@host/x?X-Amz-Credential=AKIA123&a=1")


def test_backoff_is_bounded_full_jitter():
    import random

    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0)
    rng = random.Random(1)
    delays = [policy.delay(i, rng) for i in range(10) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert max(policy.delay(0, rng) for _ in range(50)) <= 0.1
    assert len(set(delays)) == len(delays)  # jittered, never lockstep


def test_expand_braces_and_globs_local(tmp_path):
    for name in ("a-0.tar", "a-1.tar", "a-2.tar", "b.tar"):
        (tmp_path / name).write_bytes(b"x")
    store = Store()
    urls, errors = store.expand([f"{tmp_path}/a-{{0..1}}.tar", f"{tmp_path}/*.tar", f"{tmp_path}/zz-*.tar"])
    names = [os.path.basename(u) for u in urls]
    assert names == ["a-0.tar", "a-1.tar", "a-2.tar", "b.tar"]  # brace order first, then the glob, deduplicated
    assert [e.kind for e in errors] == [ErrorKind.not_found]


def test_expand_glob_on_s3(s3, bucket):
    urls, errors = Store(s3.storage_options).expand([f"{bucket}/shards/s-*.tar", f"{bucket}/shards/s-{{0..1}}.tar"])
    assert urls == [f"{bucket}/shards/s-{i}.tar" for i in range(3)] and not errors


def test_ranged_read_and_size_on_s3(s3, bucket):
    store = Store(s3.storage_options)
    assert store.size(f"{bucket}/blob.bin") == len(BLOB)
    assert store.read(f"{bucket}/blob.bin", 100, 300) == BLOB[100:300]


def test_credentials_from_the_environment_only(s3, bucket, tmp_path):
    """No options at all: endpoint and keys come from the environment, as in production."""
    code = f"from tv3s.pipeline.storage import Store;print(Store().read('{bucket}/blob.bin', 0, 4).hex())"
    env = {
        **os.environ,
        **s3.env,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == BLOB[:4].hex()


@pytest.mark.parametrize("fault", ["500", "503", "slowdown", "drop", "cut", "stall"])
def test_transient_faults_are_retried(s3, bucket, proxy, fault, caplog):
    store = proxied_store(s3, proxy)
    proxy.inject(fault, fault)
    assert store.read(f"{bucket}/blob.bin", 10, 9000) == BLOB[10:9000]
    assert proxy.requests("GET") == [fault, fault, "ok"]
    assert SECRET_KEY not in caplog.text


@pytest.mark.parametrize("fault, kind", [("403", ErrorKind.forbidden), ("404", ErrorKind.not_found)])
def test_permanent_faults_fail_at_once(s3, bucket, proxy, fault, kind):
    store = proxied_store(s3, proxy)
    proxy.inject(fault, fault)
    with pytest.raises(StorageError) as info:
        store.read(f"{bucket}/blob.bin", 0, 10)
    assert info.value.record.kind == kind
    assert proxy.requests("GET") == [fault]  # no retry
    assert info.value.record.url == f"{bucket}/blob.bin" and info.value.record.hint


def test_retries_give_up_as_unreachable(s3, bucket, proxy):
    store = proxied_store(s3, proxy, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    proxy.inject("503", "503", "503", "503")
    with pytest.raises(StorageError) as info:
        store.read(f"{bucket}/blob.bin", 0, 10)
    assert info.value.record.kind == ErrorKind.unreachable
    assert "after 3 attempts" in info.value.record.message
    assert proxy.requests("GET") == ["503"] * 3


def test_missing_object_and_closed_port(s3, bucket):
    with pytest.raises(StorageError) as info:
        Store(s3.storage_options).size(f"{bucket}/nope.tar")
    assert info.value.record.kind == ErrorKind.not_found
    dead = {**s3.storage_options, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    with pytest.raises(StorageError) as info:
        Store(dead, RetryPolicy(attempts=2, base_delay=0.01)).read(f"{bucket}/blob.bin", 0, 4)
    assert info.value.record.kind == ErrorKind.unreachable


def test_classify_local_errors():
    assert classify(FileNotFoundError("x")) == ErrorKind.not_found
    assert classify(PermissionError("x")) == ErrorKind.forbidden
    assert classify(TimeoutError()) is None
    assert classify(ConnectionResetError()) is None
    assert classify(IsADirectoryError("x")) == ErrorKind.unreachable
