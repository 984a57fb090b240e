"""Prints the IPv4 networks this container is attached to, comma-separated
(for example "10.89.3.0/24"), from the kernel's routing table.

docker/app-entrypoint.sh uses it when FORWARDED_ALLOW_IPS is "attached-networks":
uvicorn then believes X-Forwarded-* only from peers on the stack's own private
network. The app's port is published nowhere, so those peers are the stack's own
containers (nginx, which overwrites what clients claim) and the host, never a
client; and no fixed address is needed, so any number of stacks can share a host.
"""

import ipaddress
import struct
import sys


def attached_networks(route_table: str = "/proc/net/route") -> list[ipaddress.IPv4Network]:
    networks = []
    with open(route_table) as routes:
        next(routes)  # the header line
        for line in routes:
            fields = line.split()
            destination, gateway, mask = (int(fields[column], 16) for column in (1, 2, 7))
            # A route with no gateway is a network this container sits on; the
            # table prints addresses as the kernel stores them (native order).
            if destination and not gateway:
                networks.append(ipaddress.IPv4Network((struct.pack("=L", destination), mask.bit_count())))
    return sorted(set(networks))


if __name__ == "__main__":
    networks = attached_networks()
    if not networks:
        sys.exit("attached_networks: no attached IPv4 network in /proc/net/route")
    print(",".join(str(network) for network in networks))
