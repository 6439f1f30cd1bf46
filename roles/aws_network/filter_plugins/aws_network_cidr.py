"""CIDR checks for the aws_network role, from the Python standard library (no netaddr)."""

from __future__ import annotations

import ipaddress


def aws_network_cidr_error(value: object) -> str:
    """Return '' when value is an IPv4 network in CIDR form, else a short reason."""
    if not isinstance(value, str) or "/" not in value:
        return f"{value!r} is not in CIDR form (a.b.c.d/nn)"
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        return f"{value!r} is not a valid IPv4 CIDR: {err}"
    return ""


def aws_network_cidr_within(value: str, outer: str) -> bool:
    """True when the network value lies entirely inside the network outer."""
    try:
        return ipaddress.IPv4Network(value).subnet_of(ipaddress.IPv4Network(outer))
    except ValueError:
        return False


def aws_network_cidrs_overlap(values: list[str]) -> list[str]:
    """Return the pairs of networks in values that overlap, as 'a and b' strings."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.IPv4Network(value))
        except ValueError:
            continue
    return [
        f"{a} and {b}"
        for i, a in enumerate(nets)
        for b in nets[i + 1:]
        if a.overlaps(b)
    ]


class FilterModule:
    """Filters: aws_network_cidr_error, aws_network_cidr_within, aws_network_cidrs_overlap."""

    def filters(self) -> dict:
        return {
            "aws_network_cidr_error": aws_network_cidr_error,
            "aws_network_cidr_within": aws_network_cidr_within,
            "aws_network_cidrs_overlap": aws_network_cidrs_overlap,
        }
