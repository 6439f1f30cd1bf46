"""The fingerprint EC2 records for an imported OpenSSH public key, computed locally.

Project-wide filters (ansible.cfg: filter_plugins = plugins/filter), so the key pair role can
tell whether the key pair in AWS holds the local public key without importing it to find out.

EC2 imports ssh-rsa and ssh-ed25519 keys only, and fingerprints an imported key as follows
(EC2 User Guide, "Verify the fingerprint of your key pair"; DescribeKeyPairs' KeyFingerprint):
- RSA: the MD5 of the DER-encoded public key (SubjectPublicKeyInfo), as colon-separated hex,
  like `openssl pkey -pubin -outform DER | openssl md5 -c`. This is not the MD5 that
  `ssh-keygen -l -E md5` prints: that one hashes the SSH wire blob.
- ED25519: the base64 SHA-256 of the SSH wire blob, like `ssh-keygen -l` prints after
  `SHA256:`, where EC2 may append the '=' padding that ssh-keygen leaves off.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from ansible.errors import AnsibleFilterError
from cryptography.hazmat.primitives import serialization

SUPPORTED_TYPES = ("ssh-rsa", "ssh-ed25519")


def _parse(public_key: object) -> tuple[str, bytes, bytes]:
    """Return the key type, the SSH wire blob and the DER public key of an OpenSSH public key line."""
    fields = str(public_key).strip().split()
    if len(fields) < 2:
        raise AnsibleFilterError("not an OpenSSH public key line (expected 'TYPE BASE64 [COMMENT]')")
    key_type, encoded = fields[0], fields[1]
    if key_type not in SUPPORTED_TYPES:
        raise AnsibleFilterError(
            f"EC2 imports ssh-rsa and ssh-ed25519 public keys only, not {key_type!r} keys"
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
        key = serialization.load_ssh_public_key(f"{key_type} {encoded}".encode())
    except (binascii.Error, ValueError) as err:
        raise AnsibleFilterError(f"unreadable {key_type} public key: {err}") from err
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_type, blob, der


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in digest)


def aws_key_fingerprint(public_key: str) -> str:
    """The KeyFingerprint EC2 records when it imports public_key (an OpenSSH public key line)."""
    key_type, blob, der = _parse(public_key)
    if key_type == "ssh-rsa":
        return _colon_hex(hashlib.md5(der, usedforsecurity=False).digest())
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def aws_key_fingerprint_matches(recorded: str, public_key: str) -> bool:
    """True when recorded, a key pair's KeyFingerprint, is the fingerprint of public_key.

    Accepts AWS's documented form with or without base64 padding, and the form the moto
    emulator records for an imported ED25519 key (colon-separated hex SHA-256 of the DER
    public key), so the same comparison holds against AWS and the local environment.
    """
    key_type, _, der = _parse(public_key)
    recorded = str(recorded or "").strip()
    expected = aws_key_fingerprint(public_key)
    if key_type == "ssh-rsa":
        return recorded.lower() == expected
    emulated = _colon_hex(hashlib.sha256(der).digest())
    return recorded.rstrip("=") == expected.rstrip("=") or recorded.lower() == emulated


class FilterModule:
    """Filters: aws_key_fingerprint, aws_key_fingerprint_matches."""

    def filters(self) -> dict:
        return {
            "aws_key_fingerprint": aws_key_fingerprint,
            "aws_key_fingerprint_matches": aws_key_fingerprint_matches,
        }
