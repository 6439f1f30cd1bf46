"""What the platform tests share: ansible-playbook against the scenario's hosts, and its PLAY RECAP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCENARIO = REPO / "molecule" / "platform"
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
# The scenario's CA (prepare.yml, role local_ca): it signed the database host's certificate.
CA_CERT = EPHEMERAL / "ca" / "ca.crt"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ansible_playbook(playbook: Path, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook with the repository's settings and the scenario's inventory; stdout and stderr joined."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         str(playbook), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False,
    )


def changed(result: subprocess.CompletedProcess, host: str) -> int:
    """The host's changed count in a run that must have succeeded there."""
    counts = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(result.stdout)}
    assert result.returncode == 0 and host in counts, result.stdout[-3000:]
    assert counts[host][1:] == (0, 0), result.stdout[-3000:]
    return counts[host][0]
