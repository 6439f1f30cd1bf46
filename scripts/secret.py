#!/usr/bin/env python3
"""Print one secret of an environment, read from SSM Parameter Store as the playbooks read it.

    .venv/bin/python scripts/secret.py <env> <name>      e.g.  local api_token

The connection (region, endpoint, credentials) and the path come from the environment's
inventory (aws_connection, ssm_path), so the local demo's emulated store and a real AWS account
are read the same way. Prints the value alone, for `TOKEN=$(...)`; nothing else is written.
Against real AWS the same is `aws ssm get-parameter --with-decryption --name <path> ...`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def environment_settings(env: str) -> dict:
    """aws_connection and ssm_path as Ansible resolves them for the environment's control host."""
    expression = "{{ {'connection': aws_connection, 'path': ssm_path} | to_json }}"
    proc = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-i", str(ROOT / "inventories" / env), "-m", "ansible.builtin.debug",
         "-a", f"msg={expression}"],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
             "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json"})
    if proc.returncode != 0:
        sys.exit(f"secret.py: cannot read inventories/{env}: {proc.stderr.strip() or proc.stdout[-500:]}")
    msg = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    return json.loads(msg) if isinstance(msg, str) else msg


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: scripts/secret.py <env> <name>   (name: api_token, db_app_password, db_master_password)")
    env, name = sys.argv[1:]
    import boto3

    settings = environment_settings(env)
    conn = settings["connection"]
    client = boto3.client("ssm", region_name=conn.get("region"), endpoint_url=conn.get("endpoint_url"),
                          aws_access_key_id=conn.get("access_key"), aws_secret_access_key=conn.get("secret_key"))
    parameter = f"{settings['path']}/secrets/{name}"
    try:
        print(client.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"])
    except client.exceptions.ParameterNotFound:
        sys.exit(f"secret.py: {parameter} does not exist (has the environment been deployed?)")


if __name__ == "__main__":
    main()
