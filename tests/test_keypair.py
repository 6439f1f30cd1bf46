"""The aws_keypair role: the fingerprint EC2 records, computed locally, and the role against moto.

The fingerprint filter is checked against what OpenSSH and OpenSSL print for keys made here; the
role runs through ansible-playbook against a moto server on loopback that this module starts.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml
from ansible.errors import AnsibleError
from moto.ec2.utils import public_key_fingerprint, public_key_parse, select_hash_algorithm

from conftest import BIN, ROOT, ansible_env

REGION = "sa-east-1"
RECAP = re.compile(r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M)


def load_filters():
    spec = importlib.util.spec_from_file_location("ssh_key", ROOT / "roles/aws_keypair/filter_plugins/ssh_key.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


FILTERS = load_filters()
aws_key_fingerprint = FILTERS["aws_key_fingerprint"]
aws_key_fingerprint_matches = FILTERS["aws_key_fingerprint_matches"]


def keygen(path: Path, key_type: str) -> str:
    """Make an OpenSSH key pair at path (no passphrase); return the public key line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bits = ["-b", "2048"] if key_type == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, *bits, "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text()


def run(*cmd: str, stdin: bytes | None = None) -> str:
    return subprocess.run(cmd, input=stdin, check=True, capture_output=True).stdout.decode()


# --- the fingerprint filter ---------------------------------------------------------------


def test_rsa_fingerprint_is_the_md5_of_the_der_public_key(tmp_path):
    public = keygen(tmp_path / "id_rsa", "rsa")
    pkcs8 = run("ssh-keygen", "-e", "-m", "PKCS8", "-f", str(tmp_path / "id_rsa.pub"))
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pkcs8.encode(),
                         check=True, capture_output=True).stdout
    openssl_md5 = run("openssl", "md5", "-c", stdin=der).split("= ")[1].strip()
    ssh_keygen_md5 = run("ssh-keygen", "-l", "-E", "md5", "-f", str(tmp_path / "id_rsa.pub")).split()[1]

    assert aws_key_fingerprint(public) == openssl_md5
    # What ssh-keygen prints (the MD5 of the SSH blob) is not what EC2 records.
    assert aws_key_fingerprint(public) != ssh_keygen_md5.removeprefix("MD5:")


def test_ed25519_fingerprint_is_ssh_keygens_sha256_with_padding(tmp_path):
    public = keygen(tmp_path / "id_ed25519", "ed25519")
    printed = run("ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "id_ed25519.pub")).split()[1]
    unpadded = printed.removeprefix("SHA256:")

    assert aws_key_fingerprint(public) == unpadded + "="
    assert aws_key_fingerprint_matches(unpadded + "=", public)
    assert aws_key_fingerprint_matches(unpadded, public)


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_fingerprint_moto_records_matches(tmp_path, key_type):
    public = keygen(tmp_path / "key", key_type)
    key = public_key_parse(public.encode())
    recorded = public_key_fingerprint(key, select_hash_algorithm(key))

    assert aws_key_fingerprint_matches(recorded, public)


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_fingerprint_of_another_key_does_not_match(tmp_path, key_type):
    public = keygen(tmp_path / "one", key_type)
    other = keygen(tmp_path / "other", key_type)

    assert not aws_key_fingerprint_matches(aws_key_fingerprint(other), public)
    assert not aws_key_fingerprint_matches("", public)


def test_ecdsa_key_is_refused_with_the_supported_types_named(tmp_path):
    public = keygen(tmp_path / "id_ecdsa", "ecdsa")

    with pytest.raises(AnsibleError, match="ssh-rsa and ssh-ed25519"):
        aws_key_fingerprint(public)


# --- the role against moto ----------------------------------------------------------------


@pytest.fixture
def ec2(moto_endpoint):
    return boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def keypair(moto_endpoint, tmp_path, request):
    """Run the role in a tiny playbook; return (changed, output). Each test has its own key pair name."""
    name = "tm-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60]
    playbook = tmp_path / "keypair.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The key pair",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "module_defaults": {"group/amazon.aws.aws": {
            "region": REGION, "endpoint_url": moto_endpoint,
            "access_key": "testing", "secret_key": "testing",
        }},
        "vars": {
            "ansible_python_interpreter": str(BIN / "python"),
            "aws_keypair_generated_key_file": str(tmp_path / "state/ssh/id_ed25519"),
            "aws_keypair_tags": {"Project": "togglemaster", "Environment": "test", "ManagedBy": "ansible"},
            "aws_keypair_name": name,
        },
        "roles": [{"role": "aws_keypair"}],
        "post_tasks": [{
            "name": "Show the private key file the role published",
            "ansible.builtin.debug": {"msg": "private key file: {{ aws_keypair_private_key_file }}"},
        }],
    }]))

    def play(*extra: str, home: Path | None = None, check: bool = False, fails: bool = False) -> tuple[int, str]:
        env = ansible_env()
        for inherited in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(inherited, None)
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
        if home is not None:
            env["HOME"] = str(home)
        cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *extra]
        if check:
            cmd.append("--check")
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        recap = RECAP.search(out.stdout)
        assert recap and (out.returncode != 0) == fails, out.stdout + out.stderr
        return int(recap.group(1)), out.stdout

    play.name = name
    return play


def recorded(ec2, name: str) -> dict:
    return ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"][0]


def blob(public_key: str) -> str:
    return public_key.split()[1]


def test_generated_key_is_imported_once_then_left_alone(keypair, ec2, tmp_path):
    first, _ = keypair()
    second, _ = keypair()
    checked, _ = keypair(check=True)

    public = (tmp_path / "state/ssh/id_ed25519.pub").read_text()
    assert first > 0
    assert (second, checked) == (0, 0)
    assert blob(recorded(ec2, keypair.name)["PublicKey"]) == blob(public)


def test_own_rsa_key_is_imported_once_then_left_alone(keypair, ec2, tmp_path):
    public = keygen(tmp_path / "own/id_rsa", "rsa")
    own = f"aws_keypair_public_key_file={tmp_path}/own/id_rsa.pub"

    first, _ = keypair("-e", own)
    second, _ = keypair("-e", own)
    checked, _ = keypair("-e", own, check=True)

    assert first > 0
    assert (second, checked) == (0, 0)
    assert recorded(ec2, keypair.name)["KeyFingerprint"] == aws_key_fingerprint(public)
    assert not (tmp_path / "state").exists(), "a key was generated although the user named one"


def test_a_teammate_without_the_generated_key_leaves_the_key_pair_alone(keypair, ec2, tmp_path):
    keypair()
    made_here = (tmp_path / "state/ssh/id_ed25519.pub").read_text()
    # Another laptop: the same key pair in AWS, no generated key in its state folder.
    elsewhere = ("-e", f"aws_keypair_generated_key_file={tmp_path}/laptop-b/ssh/id_ed25519")
    checked, _ = keypair(*elsewhere, check=True)
    changed, out = keypair(*elsewhere)

    assert (checked, changed) == (0, 0)
    assert blob(recorded(ec2, keypair.name)["PublicKey"]) == blob(made_here)
    assert not (tmp_path / "laptop-b").exists(), "a key was generated on the teammate's laptop"
    assert '"msg": "private key file: "' in out


def test_changed_key_replaces_the_key_pair(keypair, ec2, tmp_path):
    keygen(tmp_path / "old/id_ed25519", "ed25519")
    new = keygen(tmp_path / "new/id_ed25519", "ed25519")
    keypair("-e", f"aws_keypair_public_key_file={tmp_path}/old/id_ed25519.pub")

    use_new = ("-e", f"aws_keypair_public_key_file={tmp_path}/new/id_ed25519.pub")
    checked, _ = keypair(*use_new, check=True)
    replaced, _ = keypair(*use_new)
    again, _ = keypair(*use_new)

    found = recorded(ec2, keypair.name)
    assert checked > 0 and replaced > 0 and again == 0
    assert blob(found["PublicKey"]) == blob(new)
    assert aws_key_fingerprint_matches(found["KeyFingerprint"], new)


def test_changed_tags_are_applied_to_a_key_pair_in_sync(keypair, ec2):
    keypair()
    retagged, _ = keypair("-e", '{"aws_keypair_tags": {"Project": "togglemaster", "Owner": "ops"}}')

    tags = {t["Key"]: t["Value"] for t in recorded(ec2, keypair.name)["Tags"]}
    assert retagged > 0
    assert tags == {"Project": "togglemaster", "Owner": "ops", "Name": keypair.name}


def test_tilde_paths_are_expanded(keypair, ec2, tmp_path):
    """~ reaches the role unexpanded from group_vars, or from `-e var=~/...` in zsh."""
    home = tmp_path / "home"
    public = keygen(home / ".ssh/id_ed25519", "ed25519")

    _, output = keypair("-e", "aws_keypair_generated_key_file=~/project/id_ed25519", home=home)
    generated = (home / "project/id_ed25519.pub").read_text()
    assert blob(recorded(ec2, keypair.name)["PublicKey"]) == blob(generated)
    assert f"private key file: {home}/project/id_ed25519" in output

    own, _ = keypair("-e", "aws_keypair_public_key_file=~/.ssh/id_ed25519.pub", home=home)
    assert own > 0
    assert blob(recorded(ec2, keypair.name)["PublicKey"]) == blob(public)
    assert not (tmp_path / "~").exists()


def test_ecdsa_key_fails_validation_naming_the_variable(keypair, tmp_path):
    keygen(tmp_path / "id_ecdsa", "ecdsa")

    _, output = keypair("-e", f"aws_keypair_public_key_file={tmp_path}/id_ecdsa.pub", fails=True)

    assert f"aws_keypair_public_key_file={tmp_path}/id_ecdsa.pub must name" in output
    assert "ssh-ed25519 or ssh-rsa" in output
