"""The base role proves the clock synchronised; a running daemon that cannot reach its servers fails the play.

systemd skips systemd-timesyncd inside containers, so the test lifts that condition on the web
container for its own run and points the daemon at an address where nothing answers NTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

testinfra_hosts = ["tm-platform-web"]

REPO = Path(__file__).resolve().parents[3]
DROP_IN = "/etc/systemd/system/systemd-timesyncd.service.d/test-in-container.conf"
PLAY = """
- hosts: tm-platform-web
  gather_facts: false
  roles:
    - role: base
      vars:
        base_time_sync_servers: ["127.0.0.9"]
        base_time_sync_allow_condition_skip: false
        base_time_sync_timeout: 6
"""


@pytest.fixture
def timesyncd_runs_in_the_container(host):
    host.run_expect([0], f"mkdir -p {os.path.dirname(DROP_IN)} && printf '[Unit]\\nConditionVirtualization=\\n' > {DROP_IN} && systemctl daemon-reload")
    yield
    host.run(f"rm -f {DROP_IN} /etc/systemd/timesyncd.conf.d/50-base.conf && systemctl daemon-reload && systemctl stop systemd-timesyncd")


def test_a_clock_that_does_not_synchronise_fails_the_play_naming_the_servers(host, tmp_path, timesyncd_runs_in_the_container):
    playbook = tmp_path / "time_sync.yml"
    playbook.write_text(PLAY, encoding="utf-8")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
           "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         str(playbook), "--tags", "base_time_sync"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "did not synchronise within 6 s from 127.0.0.9" in output, output[-3000:]
    assert "base_time_sync_servers" in output
    assert host.service("systemd-timesyncd").is_running, "the daemon ran: the failure is the clock, not the start"
