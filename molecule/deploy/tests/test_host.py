"""The web host after a deploy, checked the way an operator would check it."""
import json
import re

testinfra_hosts = ["ansible://web"]

ROOT = "/opt/togglemaster"


def test_service_and_socket_are_active_and_enabled(host):
    for unit in ("togglemaster.service", "togglemaster.socket", "nginx.service"):
        svc = host.service(unit)
        assert svc.is_running, f"{unit} is not active"
        assert svc.is_enabled, f"{unit} is not enabled"


def test_socket_listens_on_loopback_and_nginx_on_port_80(host):
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_env_file_is_readable_by_the_service_group_only(host):
    env = host.file("/etc/togglemaster/togglemaster.env")
    assert env.is_file
    assert env.user == "root"
    assert env.group == "togglemaster"
    assert env.mode == 0o640


def test_service_user_cannot_log_in(host):
    user = host.user("togglemaster")
    assert user.shell in ("/usr/sbin/nologin", "/bin/false")


def test_unit_hardening_scores_at_most_2_5(host):
    out = host.check_output("systemd-analyze security togglemaster.service --no-pager")
    level = float(re.search(r"Overall exposure level for togglemaster\.service: ([0-9.]+)", out).group(1))
    print(f"systemd-analyze exposure: {level}")
    assert level <= 2.5


def test_hardening_is_in_effect_on_the_running_process(host):
    pid = host.check_output("systemctl show -p MainPID --value togglemaster.service")
    assert pid != "0"
    status = host.file(f"/proc/{pid}/status").content_string
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^CapEff:\s+0+$", status, re.M)
    assert re.search(r"^CapBnd:\s+0+$", status, re.M)
    assert host.check_output(f"stat -c %U /proc/{pid}") == "togglemaster"
    props = host.check_output(
        "systemctl show -p ProtectSystem -p ProtectHome -p PrivateTmp -p PrivateDevices -p Restart togglemaster.service"
    )
    assert set(props.splitlines()) >= {
        "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "Restart=on-failure"
    }


def _releases(host):
    return host.check_output(f"ls -1t {ROOT}/releases").split()


def test_current_points_at_the_newest_release_and_it_is_recorded(host):
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    live = current.linked_to.rsplit("/", 1)[-1]
    assert live == _releases(host)[0]
    assert host.file(f"{ROOT}/RELEASE").content_string.strip() == live


def test_the_installed_releases_are_exactly_the_ones_that_went_live(host):
    """After converge (test_lifecycle.py puts the host back that way): every release in HISTORY,
    once each, is installed, and nothing else."""
    history = host.file(f"{ROOT}/HISTORY").content_string.split()
    assert history and len(history) == len(set(history)), history
    assert sorted(_releases(host)) == sorted(history)


def test_live_release_answers_through_nginx(host):
    live = host.file(f"{ROOT}/RELEASE").content_string.strip()
    body = host.check_output("python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1/health\").read().decode())'")
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["build"] == live
