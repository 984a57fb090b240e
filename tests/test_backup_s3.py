"""backup_db and restore_db against moto's S3 server on 127.0.0.1 (boto3's standard
credential chain, AWS_ENDPOINT_URL pointing at moto)."""

import pytest

from tests.servers import fake_aws_environment, moto_server
from tests.test_backup import fresh_database, manage, slugs_and_urls

BUCKET = "shortener-backups-test"


@pytest.fixture(scope="module")
def moto_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint, tmp_path):
    """The environment a backup command runs in, and an S3 client to look with."""
    import boto3

    env = fake_aws_environment(moto_endpoint, tmp_path)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    yield env, s3
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


def keys(s3, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def test_upload_list_prune_and_restore_latest(aws, tmp_path):
    env, s3 = aws
    source = {**fresh_database(tmp_path / "source", links=50), **env}
    dest = f"s3://{BUCKET}/prod/db"
    outputs = []
    for _ in range(4):
        made = manage(source, "backup_db", dest, "--keep", "3")
        assert made.returncode == 0, made.stderr
        outputs.append(made.stdout)
    stored = keys(s3, "prod/db/")
    assert len(stored) == 3
    assert all(key.startswith("prod/db/shortener-") and key.endswith("Z.sqlite3.gz") for key in stored)
    # Printed: where it went (the newest object) and its size; the oldest was pruned.
    assert f"backup written to s3://{BUCKET}/{stored[-1]} (" in outputs[-1]
    assert "KiB gzipped" in outputs[-1]
    assert "pruned s3://" in outputs[-1]
    head = s3.head_object(Bucket=BUCKET, Key=stored[-1])
    assert len(head["Metadata"]["sha256"]) == 64

    # Another object beside them is neither listed, pruned nor restored.
    s3.put_object(Bucket=BUCKET, Key="prod/db/notes.txt", Body=b"hello")
    more = manage(source, "backup_db", dest, "--keep", "3")
    assert more.returncode == 0, more.stderr
    assert "prod/db/notes.txt" in keys(s3, "prod/db/")
    assert len(keys(s3, "prod/db/")) == 4

    target_env = {**fresh_database(tmp_path / "target", links=2), **env}
    restored = manage(target_env, "restore_db", "latest", "--from", dest)
    assert restored.returncode == 0, restored.stderr
    newest = keys(s3, "prod/db/shortener-")[-1]
    assert f"restored s3://{BUCKET}/{newest} into" in restored.stdout
    assert slugs_and_urls(tmp_path / "target" / "shortener.sqlite3") == slugs_and_urls(
        tmp_path / "source" / "shortener.sqlite3"
    )

    # BACKUP_DEST is where 'latest' looks by default; an object can be named directly too.
    by_default = manage({**target_env, "BACKUP_DEST": dest}, "restore_db", "latest")
    assert by_default.returncode == 0, by_default.stderr
    oldest = keys(s3, "prod/db/shortener-")[0]
    named = manage(target_env, "restore_db", f"s3://{BUCKET}/{oldest}")
    assert named.returncode == 0, named.stderr
    assert f"restored s3://{BUCKET}/{oldest} into" in named.stdout


@pytest.fixture
def backup_in_s3(aws, tmp_path):
    env, s3 = aws
    source = {**fresh_database(tmp_path / "source", links=20), **env}
    made = manage(source, "backup_db", f"s3://{BUCKET}/site")
    assert made.returncode == 0, made.stderr
    (key,) = keys(s3, "site/")
    target_env = {**fresh_database(tmp_path / "target", links=3), **env}
    return s3, key, target_env, tmp_path / "target" / "shortener.sqlite3"


def test_an_object_with_changed_bytes_is_refused(backup_in_s3):
    s3, key, env, database = backup_in_s3
    original = s3.get_object(Bucket=BUCKET, Key=key)
    body = bytearray(original["Body"].read())
    body[len(body) // 2] ^= 0xFF
    # Same name, same checksum metadata, other bytes.
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body), Metadata=original["Metadata"])
    refused = manage(env, "restore_db", "latest", "--from", f"s3://{BUCKET}/site")
    assert refused.returncode == 1
    assert f"s3://{BUCKET}/{key} does not match its checksum" in refused.stderr
    assert "refusing it" in refused.stderr and "Traceback" not in refused.stderr
    assert len(slugs_and_urls(database)) == 3


def test_an_object_with_a_changed_or_missing_checksum_is_refused(backup_in_s3):
    s3, key, env, database = backup_in_s3
    s3.copy_object(
        Bucket=BUCKET,
        Key=key,
        CopySource={"Bucket": BUCKET, "Key": key},
        Metadata={"sha256": "0" * 64},
        MetadataDirective="REPLACE",
    )
    refused = manage(env, "restore_db", f"s3://{BUCKET}/{key}")
    assert refused.returncode == 1
    assert "does not match its checksum" in refused.stderr
    s3.copy_object(
        Bucket=BUCKET,
        Key=key,
        CopySource={"Bucket": BUCKET, "Key": key},
        Metadata={},
        MetadataDirective="REPLACE",
    )
    unverifiable = manage(env, "restore_db", f"s3://{BUCKET}/{key}")
    assert unverifiable.returncode == 1
    assert "carries no SHA-256 checksum" in unverifiable.stderr
    assert len(slugs_and_urls(database)) == 3


def test_s3_failures_are_one_clear_sentence(aws, tmp_path):
    env, _s3 = aws
    site = {**fresh_database(tmp_path / "site", links=1), **env}
    no_bucket = manage(site, "backup_db", "s3://no-such-bucket-here/x")
    assert no_bucket.returncode == 1
    assert "backup failed: cannot upload the backup to s3://no-such-bucket-here/x" in no_bucket.stderr
    assert "NoSuchBucket" in no_bucket.stderr
    no_object = manage(site, "restore_db", f"s3://{BUCKET}/site/shortener-20260101T000000.000Z.sqlite3.gz")
    assert no_object.returncode == 1
    assert "there is no backup object" in no_object.stderr
    empty = manage(site, "restore_db", "latest", "--from", f"s3://{BUCKET}/nothing-here")
    assert empty.returncode == 1
    assert f"there are no backups at s3://{BUCKET}/nothing-here" in empty.stderr
    no_credentials = {
        key: value for key, value in site.items() if key not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    no_credentials.pop("AWS_PROFILE", None)
    # No instance metadata service to ask either: fail at once.
    no_credentials["AWS_EC2_METADATA_DISABLED"] = "true"
    anonymous = manage(no_credentials, "backup_db", f"s3://{BUCKET}/x")
    assert anonymous.returncode == 1
    assert "Unable to locate credentials" in anonymous.stderr
    for result in (no_bucket, no_object, empty, anonymous):
        assert "Traceback" not in result.stderr
