"""CIDR checks for the provisioning roles' input validation, from the Python standard library.

Project-wide filters (ansible.cfg: filter_plugins = plugins/filter), so the network and the
security group roles check CIDRs the same way without pulling in netaddr.
"""

from __future__ import annotations

import ipaddress


def cidr_error(value: object) -> str:
    """Return '' when value is an IPv4 network in CIDR form, else a short reason."""
    if not isinstance(value, str) or "/" not in value:
        return f"{value!r} is not in CIDR form (a.b.c.d/nn)"
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        return f"{value!r} is not a valid IPv4 CIDR: {err}"
    return ""


def cidr_within(value: str, outer: str) -> bool:
    """True when the network value lies entirely inside the network outer."""
    try:
        return ipaddress.IPv4Network(value).subnet_of(ipaddress.IPv4Network(outer))
    except ValueError:
        return False


def cidrs_overlap(values: list[str]) -> list[str]:
    """Return the pairs of networks in values that overlap, as 'a and b' strings."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.IPv4Network(value))
        except ValueError:
            continue
    return [f"{a} and {b}" for i, a in enumerate(nets) for b in nets[i + 1:] if a.overlaps(b)]


def cidr_is_world(value: str) -> bool:
    """True when the network is the whole IPv4 space (prefix length 0)."""
    try:
        return ipaddress.IPv4Network(value, strict=False).prefixlen == 0
    except ValueError:
        return False


class FilterModule:
    """Filters: cidr_error, cidr_within, cidrs_overlap, cidr_is_world."""

    def filters(self) -> dict:
        return {
            "cidr_error": cidr_error,
            "cidr_within": cidr_within,
            "cidrs_overlap": cidrs_overlap,
            "cidr_is_world": cidr_is_world,
        }
