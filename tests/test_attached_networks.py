"""docker/attached_networks.py: the networks the app trusts X-Forwarded-* from
(FORWARDED_ALLOW_IPS=attached-networks in the compose files)."""

import ipaddress
import shutil
import subprocess
import sys

import pytest

from tests.project import PROJECT_DIR

sys.path.insert(0, str(PROJECT_DIR / "docker"))
from attached_networks import attached_networks

# /proc/net/route as the kernel prints it (x86: little-endian hex): a default route
# through 10.89.3.1, the container's own 10.89.3.0/24, and a routed 192.168.0.0/16.
ROUTE_TABLE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0103590A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0003590A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0000A8C0\t0103590A\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0000100A\t00000000\t0001\t0\t0\t0\t0000F0FF\t0\t0\t0
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the sample table is a little-endian kernel's")
def test_only_directly_attached_networks_are_trusted(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTE_TABLE)
    assert attached_networks(str(table)) == [
        ipaddress.ip_network("10.16.0.0/12"),
        ipaddress.ip_network("10.89.3.0/24"),
    ]


def test_this_machines_table_matches_ip_route():
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to compare with")
    routes = subprocess.run(["ip", "-4", "route", "show", "scope", "link"], capture_output=True, text=True)
    expected = sorted({ipaddress.ip_network(line.split()[0]) for line in routes.stdout.splitlines()})
    assert attached_networks() == expected
    assert expected, "this machine has no attached network to compare"


def test_the_command_prints_them_for_uvicorn():
    printed = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "docker" / "attached_networks.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == ",".join(str(network) for network in attached_networks())
