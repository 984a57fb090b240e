"""scripts/: provisioning against moto (no AWS account), the smoke test, shellcheck."""

import base64
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR, free_port, wait_until_up
from tests.servers import fake_aws_environment, moto_server

SCRIPTS = PROJECT_DIR / "scripts"
DEBIAN_OWNER = "136693071363"


def run_script(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


# --- shellcheck --------------------------------------------------------------------------


def test_shell_scripts_are_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = [
        *map(str, SCRIPTS.glob("*.sh")),
        str(PROJECT_DIR / ".ci/run"),
        str(PROJECT_DIR / "docker/app-entrypoint.sh"),
        str(PROJECT_DIR / "docker/backup-entrypoint.sh"),
    ]
    result = subprocess.run(["shellcheck", "--severity=style", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- smoke test ----------------------------------------------------------------------------


def test_smoke_test_passes_against_a_running_site(live_site):
    result = run_script("scripts/smoke_test.py", live_site.base_url)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("PASS") == 6
    assert "FAIL" not in result.stdout


def test_smoke_test_fails_against_a_stopped_site():
    result = run_script("scripts/smoke_test.py", f"http://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "FAIL" in result.stdout
    assert "Traceback" not in result.stderr


def test_smoke_test_fails_against_a_wrong_site(tmp_path):
    # Something answers, but not the shortener: every check must fail.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/")
        result = run_script("scripts/smoke_test.py", f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait()
    assert result.returncode == 1
    assert "PASS  GET / answers 200" in result.stdout
    assert result.stdout.count("FAIL") >= 4


# --- provisioning against moto -----------------------------------------------------------------


def moto_ami(ami_id: str, name: str, owner: str, created: str) -> dict:
    """An image in the form of moto's AMI list (MOTO_AMIS_PATH)."""
    return {
        "ami_id": ami_id,
        "name": name,
        "owner_id": owner,
        "creation_date": created,
        "state": "available",
        "public": True,
        "architecture": "x86_64",
        "root_device_type": "ebs",
        "root_device_name": "/dev/xvda",
        "virtualization_type": "hvm",
        "hypervisor": "xen",
        "image_type": "machine",
        "description": name,
    }


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    amis = tmp_path_factory.mktemp("moto") / "amis.json"
    # Debian's publishing account and naming: an older build and the newest; and
    # a newer-looking image from someone else, which must never be picked.
    amis.write_text(
        json.dumps(
            [
                moto_ami(
                    "ami-0deb12old", "debian-12-amd64-20250101-1000", DEBIAN_OWNER, "2025-01-01T10:00:00.000Z"
                ),
                moto_ami(
                    "ami-0deb12new", "debian-12-amd64-20261101-2000", DEBIAN_OWNER, "2026-11-01T20:00:00.000Z"
                ),
                moto_ami(
                    "ami-0other", "debian-12-amd64-29991231-0000", "999999999999", "2099-01-01T00:00:00.000Z"
                ),
            ]
        )
    )
    with moto_server(MOTO_AMIS_PATH=str(amis)) as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint, tmp_path):
    return {**os.environ, **fake_aws_environment(moto_endpoint, tmp_path)}


@pytest.fixture
def ec2(aws_env):
    import boto3

    return boto3.client(
        "ec2",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def live_instances(ec2, name="shortener"):
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Name", "Values": [f"{name}-server"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_provision_up_is_idempotent_and_down_removes_everything(aws_env, ec2, tmp_path):
    key_dir = tmp_path / "keys"
    args = ["scripts/provision_ec2.py", "up", "--key-dir", str(key_dir), "--ssh-cidr", "198.51.100.7/32"]
    first = run_script(*args, env=aws_env)
    assert first.returncode == 0, first.stderr
    dns = first.stdout.strip().splitlines()[-1]
    assert dns.endswith("amazonaws.com")

    instances = live_instances(ec2)
    assert len(instances) == 1
    instance = instances[0]
    assert instance["InstanceType"] == "t2.micro"
    assert instance["ImageId"] == "ami-0deb12new"  # the newest of Debian's own

    key_file = key_dir / "shortener-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key_file.read_text()
    assert not str(key_file).startswith(str(PROJECT_DIR))

    (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]])[
        "SecurityGroups"
    ]
    rules = {(r["FromPort"], ip["CidrIp"]) for r in group["IpPermissions"] for ip in r["IpRanges"]}
    assert rules == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0"), (22, "198.51.100.7/32")}

    user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert script.startswith("#!/usr/bin/env bash")
    assert "docker-compose-plugin" in script and "download.docker.com" in script

    second = run_script(*args, env=aws_env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == dns
    assert len(live_instances(ec2)) == 1
    assert (
        len(
            ec2.describe_security_groups(Filters=[{"Name": "tag:Name", "Values": ["shortener-web"]}])[
                "SecurityGroups"
            ]
        )
        == 1
    )

    down = run_script("scripts/provision_ec2.py", "down", env=aws_env)
    assert down.returncode == 0, down.stderr
    assert live_instances(ec2) == []
    assert (
        ec2.describe_security_groups(Filters=[{"Name": "tag:Name", "Values": ["shortener-web"]}])[
            "SecurityGroups"
        ]
        == []
    )
    assert (
        ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["shortener-key"]}])["KeyPairs"] == []
    )


def test_ssh_is_closed_to_the_world_by_default(aws_env, ec2, tmp_path):
    result = run_script(
        "scripts/provision_ec2.py",
        "up",
        "--name",
        "nossh",
        "--key-dir",
        str(tmp_path),
        "--ami",
        "ami-0deb12old",
        env=aws_env,
    )
    assert result.returncode == 0, result.stderr
    (instance,) = live_instances(ec2, "nossh")
    assert instance["ImageId"] == "ami-0deb12old"
    (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]])[
        "SecurityGroups"
    ]
    assert {r["FromPort"] for r in group["IpPermissions"]} == {80, 443}
    run_script("scripts/provision_ec2.py", "down", "--name", "nossh", env=aws_env)


def test_missing_credentials_give_a_clear_error_not_a_traceback(aws_env):
    env = {
        k: v for k, v in aws_env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
    }
    env.pop("AWS_PROFILE", None)
    result = run_script("scripts/provision_ec2.py", "up", env=env)
    assert result.returncode == 2
    assert "no AWS credentials found" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_region_gives_a_clear_error(aws_env):
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    result = run_script("scripts/provision_ec2.py", "up", env=env)
    assert result.returncode == 2
    assert "no AWS region set" in result.stderr
    assert "Traceback" not in result.stderr


# --- the backup bucket -------------------------------------------------------------------------


def aws_client(service: str, aws_env: dict):
    import boto3

    return boto3.client(
        service,
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def bucket_exists(s3, bucket: str) -> bool:
    return bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_backup_bucket_outlives_the_instance_until_deleted_on_request(aws_env, ec2, tmp_path):
    from tests.test_backup import fresh_database, manage, slugs_and_urls

    s3, iam = aws_client("s3", aws_env), aws_client("iam", aws_env)
    bucket = "shortener-backups-kit"
    args = [
        "scripts/provision_ec2.py",
        "up",
        "--name",
        "bk",
        "--key-dir",
        str(tmp_path),
        "--backup-bucket",
        bucket,
    ]
    first = run_script(*args, env=aws_env)
    assert first.returncode == 0, first.stderr
    assert f"BACKUP_DEST=s3://{bucket}/bk" in first.stdout
    assert "AWS_DEFAULT_REGION=us-east-1" in first.stdout
    assert first.stdout.strip().splitlines()[-1].endswith("amazonaws.com")

    # Private, versioned, encrypted, old versions expire.
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30

    # The instance carries a profile whose role may write to that bucket only,
    # and its metadata service answers containers (IMDSv2, two hops).
    (instance,) = live_instances(ec2, "bk")
    assert instance["IamInstanceProfile"]["Arn"].endswith("instance-profile/bk-backup")
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    (role,) = iam.get_instance_profile(InstanceProfileName="bk-backup")["InstanceProfile"]["Roles"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    policy = iam.get_role_policy(RoleName="bk-backup", PolicyName="backups")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    resources = {statement["Resource"] for statement in policy["Statement"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    assert any("s3:PutObject" in statement["Action"] for statement in policy["Statement"])

    again = run_script(*args, env=aws_env)
    assert again.returncode == 0, again.stderr
    assert len(live_instances(ec2, "bk")) == 1

    # A backup taken into the bucket...
    site = {**fresh_database(tmp_path / "site", links=7), **aws_env}
    assert manage(site, "backup_db", f"s3://{bucket}/bk").returncode == 0

    # ...survives the instance: down keeps the bucket and says so.
    down = run_script("scripts/provision_ec2.py", "down", "--name", "bk", env=aws_env)
    assert down.returncode == 0, down.stderr
    assert "--delete-backup-bucket" in down.stdout
    assert live_instances(ec2, "bk") == []
    assert bucket_exists(s3, bucket)
    elsewhere = {**fresh_database(tmp_path / "elsewhere"), **aws_env}
    restored = manage(elsewhere, "restore_db", "latest", "--from", f"s3://{bucket}/bk")
    assert restored.returncode == 0, restored.stderr
    assert slugs_and_urls(tmp_path / "elsewhere" / "shortener.sqlite3") == slugs_and_urls(
        tmp_path / "site" / "shortener.sqlite3"
    )

    # Only when asked: every version of every backup, the bucket and the role go.
    s3.delete_object(Bucket=bucket, Key=s3.list_objects_v2(Bucket=bucket)["Contents"][0]["Key"])
    deleted = run_script(
        "scripts/provision_ec2.py", "down", "--name", "bk", "--delete-backup-bucket", bucket, env=aws_env
    )
    assert deleted.returncode == 0, deleted.stderr
    assert not bucket_exists(s3, bucket)
    assert "bk-backup" not in {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert "bk-backup" not in {
        p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
    }


def test_down_refuses_to_be_told_to_keep_or_up_to_delete_a_bucket(aws_env):
    keep = run_script("scripts/provision_ec2.py", "down", "--backup-bucket", "x", env=aws_env)
    assert keep.returncode == 2 and "--delete-backup-bucket" in keep.stderr
    delete = run_script("scripts/provision_ec2.py", "up", "--delete-backup-bucket", "x", env=aws_env)
    assert delete.returncode == 2 and "--delete-backup-bucket is for down" in delete.stderr
