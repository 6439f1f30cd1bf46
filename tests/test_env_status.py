"""status.yml's certificate lines (roles/env_status/templates/status.j2, macro `certificate`):
days left counted from the certificate's expiry in any local time zone, none, and an unread one.

The macro is rendered by Ansible itself (its `now()`), from the template file, on a control node
whose clock is set to a zone far from UTC."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import BIN, ROOT, ansible_env

TEMPLATE = ROOT / "roles/env_status/templates/status.j2"
DAY = 86400


def rendered(tmp_path, seen: dict, zone: str) -> str:
    text = TEMPLATE.read_text()
    start = text.index("{% macro certificate(")
    end = text.index("{%- endmacro %}", start) + len("{%- endmacro %}")
    (tmp_path / "line.j2").write_text(text[start:end] + "\n{{ certificate(seen) }}")
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.debug": {"msg": "line=[{{ lookup('ansible.builtin.template', 'line.j2') | trim }}]"}}],
    }]))
    env = {**ansible_env(), "TZ": zone}
    out = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps({"seen": seen})],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout.split("line=[", 1)[1].split("]", 1)[0]


# 10 days and some hours away: 10 days left wherever the laptop is. The hours are chosen so that
# reading the clock in the laptop's zone as if it were UTC would cross a day boundary there
# (3 hours behind UTC in Sao Paulo, 9 ahead in Tokyo).
@pytest.mark.parametrize(("zone", "hours"), [("UTC", 1), ("America/Sao_Paulo", 1), ("Asia/Tokyo", 20)])
def test_days_left_are_counted_from_the_expiry_in_any_time_zone(tmp_path, zone, hours):
    seen = {"name": "flags.example.com", "issuer": "R11", "expires": int(time.time()) + 10 * DAY + hours * 3600}
    assert rendered(tmp_path, seen, zone) == "flags.example.com, issued by R11, 10 days left"


def test_an_expired_certificate_says_so(tmp_path):
    seen = {"name": "flags.example.com", "issuer": "R11", "expires": int(time.time()) - 3600}
    assert rendered(tmp_path, seen, "UTC") == "flags.example.com, issued by R11, expired"


def test_no_certificate_and_an_unread_one_say_so(tmp_path):
    assert rendered(tmp_path, {}, "UTC") == "none"
    assert rendered(tmp_path, {"unread": "AccessDenied"}, "UTC") == "unknown (AccessDenied)"
