#!/usr/bin/env python3
"""Create (or remove) the AWS resources for one shortener server.

    python scripts/provision_ec2.py up [--ssh-cidr 203.0.113.7/32] [--ami ami-...]
    python scripts/provision_ec2.py down

`up` creates, or reuses when they exist (found by their tags), a key pair, a
security group (HTTP and HTTPS from anywhere, SSH only from --ssh-cidr) and a
t2.micro instance running the latest official Debian 12 AMI, whose user data
runs scripts/setup-ec2.sh at first boot. It waits until the instance runs and
prints its public DNS name as the last line. `down` removes all of it.

Credentials, region and endpoint come from the standard AWS configuration
(AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, ~/.aws/...).
Needs boto3 (`pip install boto3`).
"""

import argparse
import os
import stat
import sys
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


def up(ec2, args) -> str:
    key_path = ensure_key_pair(ec2, name=args.name, key_dir=args.key_dir)
    group_id = ensure_security_group(ec2, name=args.name, ssh_cidr=args.ssh_cidr)
    instance = find_instance(ec2, name=args.name)
    if instance is None:
        ami = args.ami or latest_debian_12_ami(ec2)
        instance = ec2.run_instances(
            ImageId=ami,
            InstanceType=INSTANCE_TYPE,
            MinCount=1,
            MaxCount=1,
            KeyName=f"{args.name}-key",
            SecurityGroupIds=[group_id],
            UserData=user_data(),
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags(args.name, "server")}],
        )["Instances"][0]
        print(f"instance {instance['InstanceId']} ({INSTANCE_TYPE}, {ami}) starting")
    else:
        print(f"instance {instance['InstanceId']} exists ({instance['State']['Name']})")
        if instance["State"]["Name"] == "stopped":
            ec2.start_instances(InstanceIds=[instance["InstanceId"]])
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]])
    described = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][
        0
    ]
    dns = described.get("PublicDnsName") or described.get("PublicIpAddress") or ""
    if not dns:
        raise ProvisionError(f"instance {instance['InstanceId']} runs but has no public address")
    print(f"ssh: ssh -i {key_path} admin@{dns}")
    return dns


def down(ec2, args) -> None:
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
        "--key-dir",
        type=Path,
        default=Path.home() / ".ssh",
        help="where the private key is written (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.ssh_cidr == "0.0.0.0/0":
        print("warning: SSH open to the whole internet", file=sys.stderr)
    try:
        ec2 = boto3.client("ec2")
        if args.action == "up":
            print(up(ec2, args))
        else:
            down(ec2, args)
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
