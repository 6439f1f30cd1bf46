"""Shared defaults live once in playbooks/group_vars/; each environment resolves its own overrides.

Ansible's precedence (low to high) that this layout relies on:
inventory group_vars/all < playbook group_vars/all (playbooks/group_vars/all)
< inventory group_vars/<environment group>.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, ansible_env

ENVIRONMENTS = ("local", "staging", "production")
SHARED = yaml.safe_load((ROOT / "playbooks/group_vars/all/main.yml").read_text())


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_resolves_its_own_name(host_vars, environment):
    resolved = host_vars(environment, "localhost")
    assert resolved["env_name"] == environment
    assert resolved["common_tags"]["Environment"] == "{{ env_name }}"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_shared_defaults_reach_every_environment(host_vars, environment):
    resolved = host_vars(environment, "localhost")
    assert resolved["project_name"] == SHARED["project_name"] == "togglemaster"
    assert "db_master_password" in resolved, "playbooks/group_vars/all/database.yml is not loaded"


def test_local_override_wins_over_shared_default(host_vars):
    assert SHARED["aws_endpoint_url"] == ""
    assert host_vars("local", "localhost")["aws_endpoint_url"].startswith("http://127.0.0.1:")
    assert host_vars("staging", "localhost")["aws_endpoint_url"] == ""


def test_environment_group_beats_playbook_group_vars_all(host_vars, tmp_path):
    """An extra source that sets env_name for group all loses to the environment group."""
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"all": {"vars": {"env_name": "from-all"}}}))
    assert host_vars("staging", "localhost", extra_inventory=extra)["env_name"] == "staging"


def test_local_hosts_are_in_the_local_environment(host_vars):
    web = host_vars("local", "tm-local-web")
    assert web["env_name"] == "local"
    assert web["ansible_port"] == 2222


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_inventory_shadows_the_shared_defaults(environment):
    # An inventory group_vars/all would be silently beaten by playbooks/group_vars/all.
    assert not (ROOT / "inventories" / environment / "group_vars" / "all").exists()
    assert not (ROOT / "inventories" / environment / "group_vars" / "all.yml").exists()


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_differ_from_the_shared_default(environment):
    """A value set in two places is a bug waiting: an override must actually change something."""
    shared: dict = {}
    for path in sorted((ROOT / "playbooks/group_vars/all").glob("*.yml")):
        shared.update(yaml.safe_load(path.read_text()) or {})
    folder = ROOT / "inventories" / environment / "group_vars" / environment
    for path in sorted(folder.glob("*.yml")):
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            assert key not in shared or shared[key] != value, f"{path.relative_to(ROOT)}: {key} repeats the shared default"


@pytest.mark.parametrize("environment", ("staging", "production"))
def test_aws_hosts_keep_time_with_the_amazon_time_sync_service(host_vars, environment):
    # The web security group lets no NTP out; only the link-local service answers on EC2.
    assert host_vars(environment, "localhost")["base_time_sync_servers"] == ["169.254.169.123"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_region_and_project_are_set_once_in_the_shared_defaults(environment):
    """No inventory file repeats the region or the project name: hosts are found with aws_region and common_tags."""
    for path in sorted((ROOT / "inventories" / environment).rglob("*.yml")):
        text = path.read_text()
        assert SHARED["aws_region"] not in text, f"{path.relative_to(ROOT)} names the region"
        assert SHARED["project_name"] not in text, f"{path.relative_to(ROOT)} names the project"


def resolved(environment: str, *shown: str, **extra) -> dict:
    """Variables as a playbook resolves them for the environment's control host (tests/playbooks/show_vars.yml)."""
    cmd = [str(BIN / "ansible-playbook"), "-i", f"inventories/{environment}", "tests/playbooks/show_vars.yml",
           "-e", json.dumps({"shown": list(shown), **extra})]
    out = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return json.loads(re.search(r'"msg": "resolved=(.*)"', out.stdout).group(1).replace('\\"', '"'))


PUBLIC_RANGES = ["10.30.0.0/24", "10.30.1.0/24"]


@pytest.mark.parametrize(
    ("topology", "outputs", "trusted"),
    [
        ("ha", {"vpc_cidr": "10.30.0.0/16", "public_subnet_cidrs": PUBLIC_RANGES}, PUBLIC_RANGES),
        ("ha", {"vpc_cidr": "10.30.0.0/16"}, ["10.30.0.0/16"]),
        ("ha", {}, []),
        ("single", {"vpc_cidr": "10.30.0.0/16", "public_subnet_cidrs": PUBLIC_RANGES}, []),
    ],
    ids=["ha", "ha-outputs-without-subnet-ranges", "ha-no-outputs", "single"],
)
def test_nginx_trusts_the_public_subnets_for_client_addresses_behind_the_alb(topology, outputs, trusted):
    """The ALB's nodes live in the public subnets: their ranges (the provisioning outputs) are where
    nginx takes the client's address from X-Forwarded-For; outputs from before they were recorded
    give the VPC's range; without a load balancer, nowhere."""
    shown = resolved("staging", "reverse_proxy_trusted_proxies", topology=topology, provision_outputs=outputs)
    assert shown == {"reverse_proxy_trusted_proxies": trusted}


@pytest.mark.parametrize("key_exists", (True, False), ids=("project-key-here", "no-project-key"))
def test_ssh_offers_only_the_project_key_when_this_laptop_has_it(tmp_path, key_exists):
    """sshd ends a connection after MaxAuthTries keys: with the project's key file, ssh offers it
    alone; without it (a teammate's clone), ssh falls back to the agent and ~/.ssh."""
    key = tmp_path / "id_ed25519"
    if key_exists:
        key.write_text("not a real key\n")
    shown = resolved("staging", "ansible_ssh_private_key_file", "ansible_ssh_common_args",
                     aws_keypair_generated_key_file=str(key))
    assert shown["ansible_ssh_private_key_file"] == (str(key) if key_exists else "")
    assert ("IdentitiesOnly=yes" in shown["ansible_ssh_common_args"]) is key_exists
    assert "StrictHostKeyChecking=accept-new" in shown["ansible_ssh_common_args"]


def test_the_service_port_is_set_once_for_the_service_nginx_and_status():
    """The socket the service listens on, the upstream nginx passes to and the URL status.yml asks
    follow one project variable: a port changed there moves all three."""
    names = ("flag_service_port", "reverse_proxy_upstream_port", "env_status_ready_url")
    shown = resolved("staging", *names, service_port=8100)
    assert shown == {"flag_service_port": 8100, "reverse_proxy_upstream_port": 8100,
                     "env_status_ready_url": "http://127.0.0.1:8100/ready"}
