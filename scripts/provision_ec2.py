#!/usr/bin/env python3
"""Create (or remove) the AWS resources for one shortener server.

    python scripts/provision_ec2.py up [--ssh-cidr 203.0.113.7/32] [--ami ami-...] [--backup-bucket NAME]
    python scripts/provision_ec2.py down [--delete-backup-bucket NAME]

`up` creates, or reuses when they exist (found by their tags), a key pair, a
security group (HTTP and HTTPS from anywhere, SSH only from --ssh-cidr) and a
t2.micro instance running the latest official Debian 12 AMI, whose user data
runs scripts/setup-ec2.sh at first boot. It waits until the instance runs and
prints its public DNS name as the last line. `down` removes all of it.

With --backup-bucket NAME, `up` also creates a private, versioned, encrypted S3
bucket for the database backups and an instance profile that lets the instance
(and so the stack's backup service) write to it. `down` keeps both: backups must
outlive the instance. `down --delete-backup-bucket NAME` deletes them too.

Credentials, region and endpoint come from the standard AWS configuration
(AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, ~/.aws/...).
Needs boto3 (`pip install boto3`).
"""

import argparse
import json
import os
import stat
import sys
import time
from pathlib import Path

try:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
except ImportError:
    sys.exit("error: boto3 is not installed: pip install boto3")

PROJECT_TAG = ("Project", "shortener")
DEFAULT_NAME = "shortener"
INSTANCE_TYPE = "t2.micro"
# Debian's official AMIs are published by this account, named debian-12-<arch>-<date>-<build>.
DEBIAN_OWNER = "136693071363"
DEBIAN_12_NAME_PATTERN = "debian-12-amd64-*"
SETUP_SCRIPT = Path(__file__).resolve().parent / "setup-ec2.sh"
# Pruned backups (and overwritten ones) stay recoverable this long as old versions.
NONCURRENT_BACKUP_DAYS = 30
# IMDSv2 only; two hops, so that containers (one bridge away) can reach it for
# the instance profile's credentials.
METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"}


class ProvisionError(Exception):
    """A problem to report in one line, without a traceback."""


def tags(name: str, role: str) -> list[dict]:
    return [{"Key": PROJECT_TAG[0], "Value": PROJECT_TAG[1]}, {"Key": "Name", "Value": f"{name}-{role}"}]


def tag_filters(name: str, role: str) -> list[dict]:
    return [
        {"Name": f"tag:{PROJECT_TAG[0]}", "Values": [PROJECT_TAG[1]]},
        {"Name": "tag:Name", "Values": [f"{name}-{role}"]},
    ]


def latest_debian_12_ami(ec2) -> str:
    images = ec2.describe_images(
        Owners=[DEBIAN_OWNER],
        Filters=[
            {"Name": "name", "Values": [DEBIAN_12_NAME_PATTERN]},
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    if not images:
        raise ProvisionError(
            f"no Debian 12 AMI from owner {DEBIAN_OWNER} in this region; pass one with --ami"
        )
    # Debian's names carry the build date, so the greatest name is the newest.
    return max(images, key=lambda image: (image.get("CreationDate", ""), image["Name"]))["ImageId"]


def ensure_key_pair(ec2, *, name: str, key_dir: Path) -> Path:
    key_name = f"{name}-key"
    key_path = key_dir / f"{key_name}.pem"
    existing = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [key_name]}])["KeyPairs"]
    if existing:
        if not key_path.exists():
            print(
                f"key pair {key_name} exists in AWS, but its private key is not at {key_path}",
                file=sys.stderr,
            )
        return key_path
    created = ec2.create_key_pair(
        KeyName=key_name,
        KeyType="ed25519",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags(name, "key")}],
    )
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created with 0600 from the first byte: the private key is never readable by others.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as key_file:
        key_file.write(created["KeyMaterial"])
    print(f"private key written to {key_path} (keep it secret; it cannot be downloaded again)")
    return key_path


def default_vpc_id(ec2) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ProvisionError("this region has no default VPC; create one (aws ec2 create-default-vpc)")
    return vpcs[0]["VpcId"]


def ensure_security_group(ec2, *, name: str, ssh_cidr: str | None) -> str:
    group_name = f"{name}-web"
    found = ec2.describe_security_groups(Filters=tag_filters(name, "web"))["SecurityGroups"]
    if found:
        group_id = found[0]["GroupId"]
    else:
        group_id = ec2.create_security_group(
            GroupName=group_name,
            Description="shortener: HTTP and HTTPS from anywhere, SSH from one address",
            VpcId=default_vpc_id(ec2),
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags(name, "web")}],
        )["GroupId"]
        print(f"security group {group_id} created")
    wanted = [("tcp", 80, "0.0.0.0/0"), ("tcp", 443, "0.0.0.0/0")]
    if ssh_cidr:
        wanted.append(("tcp", 22, ssh_cidr))
    present = {
        (rule["IpProtocol"], rule.get("FromPort"), ip_range["CidrIp"])
        for group in ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
        for rule in group["IpPermissions"]
        for ip_range in rule.get("IpRanges", [])
    }
    missing = [
        {"IpProtocol": proto, "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}
        for proto, port, cidr in wanted
        if (proto, port, cidr) not in present
    ]
    if missing:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=missing)
    return group_id


def user_data() -> str:
    """Cloud-init runs this as root at first boot: the set-up script, verbatim."""
    return SETUP_SCRIPT.read_text()


def find_instance(ec2, *, name: str) -> dict | None:
    reservations = ec2.describe_instances(
        Filters=[
            *tag_filters(name, "server"),
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    instances = [instance for reservation in reservations for instance in reservation["Instances"]]
    return instances[0] if instances else None


def ensure_backup_bucket(s3, *, bucket: str, name: str, region: str) -> None:
    """A private, versioned, encrypted bucket for backups (reused when it is ours)."""
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"backup bucket {bucket} exists")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("403", "AccessDenied"):
            raise ProvisionError(
                f"bucket {bucket} belongs to another account: choose another name"
            ) from error
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        created = {"Bucket": bucket}
        if region != "us-east-1":
            created["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**created)
        print(f"backup bucket {bucket} created")
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
            ]
        },
    )
    # Versioning keeps what a prune (or a compromised server) deletes; for a while only.
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "old-backup-versions",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_BACKUP_DAYS},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
            ]
        },
    )
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags(name, "backups")})


def backup_role_name(name: str) -> str:
    return f"{name}-backup"


def ensure_backup_profile(iam, *, bucket: str, name: str) -> str:
    """An instance profile whose role may list, read, write and delete the bucket's objects."""
    role = backup_role_name(name)
    try:
        iam.get_role(RoleName=role)
    except iam.exceptions.NoSuchEntityException:
        iam.create_role(
            RoleName=role,
            Description="shortener: the server writes database backups to its bucket",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            Tags=tags(name, "backup"),
        )
        print(f"role {role} created")
    iam.put_role_policy(
        RoleName=role,
        PolicyName="backups",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
                    {
                        "Effect": "Allow",
                        "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    },
                ],
            }
        ),
    )
    try:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=role, Tags=tags(name, "backup"))[
            "InstanceProfile"
        ]
        print(f"instance profile {role} created")
    if role not in {r["RoleName"] for r in profile.get("Roles", [])}:
        iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    return role


def run_instance(ec2, **request) -> dict:
    # A new instance profile takes a few seconds to be usable by EC2 (IAM is
    # eventually consistent): retry while EC2 does not know it yet.
    for attempt in range(12):
        try:
            return ec2.run_instances(**request)["Instances"][0]
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message", "")
            if "IamInstanceProfile" not in request or "iamInstanceProfile" not in message or attempt == 11:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def attach_backup_profile(ec2, *, instance_id: str, profile: str) -> None:
    """Give an existing instance the profile, and a metadata service containers can reach."""
    associations = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance_id]}]
    )["IamInstanceProfileAssociations"]
    if not [a for a in associations if a.get("State") in ("associating", "associated")]:
        ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=instance_id)
        print(f"instance profile {profile} attached to {instance_id}")
    ec2.modify_instance_metadata_options(InstanceId=instance_id, **METADATA_OPTIONS)


def up(ec2, args, *, s3=None, iam=None) -> str:
    key_path = ensure_key_pair(ec2, name=args.name, key_dir=args.key_dir)
    group_id = ensure_security_group(ec2, name=args.name, ssh_cidr=args.ssh_cidr)
    profile = None
    if args.backup_bucket:
        ensure_backup_bucket(s3, bucket=args.backup_bucket, name=args.name, region=ec2.meta.region_name)
        profile = ensure_backup_profile(iam, bucket=args.backup_bucket, name=args.name)
    instance = find_instance(ec2, name=args.name)
    if instance is None:
        ami = args.ami or latest_debian_12_ami(ec2)
        request = {
            "ImageId": ami,
            "InstanceType": INSTANCE_TYPE,
            "MinCount": 1,
            "MaxCount": 1,
            "KeyName": f"{args.name}-key",
            "SecurityGroupIds": [group_id],
            "UserData": user_data(),
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}
            ],
            "MetadataOptions": METADATA_OPTIONS,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags(args.name, "server")}],
        }
        if profile:
            request["IamInstanceProfile"] = {"Name": profile}
        instance = run_instance(ec2, **request)
        print(f"instance {instance['InstanceId']} ({INSTANCE_TYPE}, {ami}) starting")
    else:
        print(f"instance {instance['InstanceId']} exists ({instance['State']['Name']})")
        if instance["State"]["Name"] == "stopped":
            ec2.start_instances(InstanceIds=[instance["InstanceId"]])
        if profile:
            attach_backup_profile(ec2, instance_id=instance["InstanceId"], profile=profile)
    if args.backup_bucket:
        print(
            "backups: set these in the server's ~/shortener/.env, then deploy again:\n"
            f"  BACKUP_DEST=s3://{args.backup_bucket}/{args.name}\n"
            f"  AWS_DEFAULT_REGION={ec2.meta.region_name}"
        )
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]])
    described = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][
        0
    ]
    dns = described.get("PublicDnsName") or described.get("PublicIpAddress") or ""
    if not dns:
        raise ProvisionError(f"instance {instance['InstanceId']} runs but has no public address")
    print(f"ssh: ssh -i {key_path} admin@{dns}")
    return dns


def down(ec2, args, *, s3=None, iam=None) -> None:
    instance = find_instance(ec2, name=args.name)
    if instance is not None:
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[instance["InstanceId"]])
        print(f"instance {instance['InstanceId']} terminated")
    for group in ec2.describe_security_groups(Filters=tag_filters(args.name, "web"))["SecurityGroups"]:
        ec2.delete_security_group(GroupId=group["GroupId"])
        print(f"security group {group['GroupId']} deleted")
    key_name = f"{args.name}-key"
    if ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [key_name]}])["KeyPairs"]:
        ec2.delete_key_pair(KeyName=key_name)
        print(f"key pair {key_name} deleted (the local private key file is left to you)")
    if args.delete_backup_bucket:
        delete_backup_bucket(s3, bucket=args.delete_backup_bucket)
        delete_backup_profile(iam, name=args.name)
    elif backup_role_exists(iam, name=args.name):
        print(
            f"the backup bucket and the instance profile {backup_role_name(args.name)} are kept "
            "(delete them with --delete-backup-bucket NAME)"
        )


def backup_role_exists(iam, *, name: str) -> bool:
    try:
        iam.get_role(RoleName=backup_role_name(name))
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def delete_backup_bucket(s3, *, bucket: str) -> None:
    """Every version of every backup, then the bucket: it is versioned, so a plain
    delete of the objects would leave their versions (and the bucket) behind."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code", "") in ("404", "NoSuchBucket", "NotFound"):
            print(f"backup bucket {bucket} does not exist")
            return
        raise
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
    print(f"backup bucket {bucket} deleted, with every backup in it")


def delete_backup_profile(iam, *, name: str) -> None:
    role = backup_role_name(name)
    try:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = None
    if profile is not None:
        for attached in profile.get("Roles", []):
            iam.remove_role_from_instance_profile(InstanceProfileName=role, RoleName=attached["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=role)
        print(f"instance profile {role} deleted")
    try:
        for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            iam.delete_role_policy(RoleName=role, PolicyName=policy)
        iam.delete_role(RoleName=role)
        print(f"role {role} deleted")
    except iam.exceptions.NoSuchEntityException:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help="prefix of every resource's name (default: %(default)s)"
    )
    parser.add_argument(
        "--ssh-cidr", help="address range allowed to SSH, e.g. 203.0.113.7/32 (default: none)"
    )
    parser.add_argument("--ami", help="AMI id to use instead of the latest Debian 12")
    parser.add_argument(
        "--backup-bucket",
        metavar="NAME",
        help="up: also create this private, versioned, encrypted S3 bucket for backups, "
        "which the instance may write to",
    )
    parser.add_argument(
        "--delete-backup-bucket",
        metavar="NAME",
        help="down: also delete this backup bucket, every backup in it, and the instance's backup role",
    )
    parser.add_argument(
        "--key-dir",
        type=Path,
        default=Path.home() / ".ssh",
        help="where the private key is written (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.ssh_cidr == "0.0.0.0/0":
        print("warning: SSH open to the whole internet", file=sys.stderr)
    if args.action == "down" and args.backup_bucket:
        parser.error("down keeps the backup bucket; to delete it, use --delete-backup-bucket NAME")
    if args.action == "up" and args.delete_backup_bucket:
        parser.error("--delete-backup-bucket is for down")
    try:
        ec2 = boto3.client("ec2")
        s3 = boto3.client("s3", region_name=ec2.meta.region_name)
        iam = boto3.client("iam")
        if args.action == "up":
            print(up(ec2, args, s3=s3, iam=iam))
        else:
            down(ec2, args, s3=s3, iam=iam)
    except NoCredentialsError:
        print(
            "error: no AWS credentials found: run 'aws configure' or set AWS_PROFILE / AWS_ACCESS_KEY_ID",
            file=sys.stderr,
        )
        return 2
    except NoRegionError:
        print(
            "error: no AWS region set: use AWS_REGION=eu-west-1 (for example) or 'aws configure'",
            file=sys.stderr,
        )
        return 2
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", str(error))
        hint = " (instance quota reached: see EC2 > Limits)" if "LimitExceeded" in code else ""
        print(f"error: AWS refused: {code}: {message}{hint}", file=sys.stderr)
        return 1
    except (BotoCoreError, ProvisionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
