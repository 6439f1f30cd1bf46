"""CIDR checks for the aws_security_groups role, from the Python standard library (no netaddr)."""

from __future__ import annotations

import ipaddress


def aws_security_groups_cidr_error(value: object) -> str:
    """Return '' when value is an IPv4 network in CIDR form, else a short reason."""
    if not isinstance(value, str) or "/" not in value:
        return f"{value!r} is not in CIDR form (a.b.c.d/nn)"
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        return f"{value!r} is not a valid IPv4 CIDR: {err}"
    return ""


def aws_security_groups_cidr_is_world(value: str) -> bool:
    """True when the network is the whole IPv4 space (prefix length 0)."""
    try:
        return ipaddress.IPv4Network(value, strict=False).prefixlen == 0
    except ValueError:
        return False


class FilterModule:
    """Filters: aws_security_groups_cidr_error, aws_security_groups_cidr_is_world."""

    def filters(self) -> dict:
        return {
            "aws_security_groups_cidr_error": aws_security_groups_cidr_error,
            "aws_security_groups_cidr_is_world": aws_security_groups_cidr_is_world,
        }
