"""CIDR checks for the provisioning roles' input validation, from the Python standard library.

Project-wide filters (ansible.cfg: filter_plugins = plugins/filter), so the network and the
security group roles check CIDRs the same way without pulling in netaddr.
"""

from __future__ import annotations

import ipaddress


def _as_list(value: object) -> list:
    """A single value, or each value of a list (admin_cidr may become a list)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def cidr_error(value: object) -> str:
    """Return '' when value is an IPv4 network in CIDR form (or a list of them), else a short reason."""
    if isinstance(value, (list, tuple)):
        return "; ".join(error for error in map(cidr_error, value) if error)
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


def cidrs_wider_than(value: object, prefixlen: int) -> list[str]:
    """The networks in value (one CIDR or a list) with a shorter prefix than prefixlen.

    cidrs_wider_than('0.0.0.0/1', 16) == ['0.0.0.0/1']; a /16 itself is not wider than a /16.
    Values that are not networks are left to cidr_error.
    """
    wider = []
    for item in _as_list(value):
        try:
            if ipaddress.IPv4Network(str(item), strict=False).prefixlen < int(prefixlen):
                wider.append(str(item))
        except ValueError:
            continue
    return wider


class FilterModule:
    """Filters: cidr_error, cidr_within, cidrs_overlap, cidrs_wider_than."""

    def filters(self) -> dict:
        return {
            "cidr_error": cidr_error,
            "cidr_within": cidr_within,
            "cidrs_overlap": cidrs_overlap,
            "cidrs_wider_than": cidrs_wider_than,
        }
