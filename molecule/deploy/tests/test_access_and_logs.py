"""Both hosts after a deploy: who may log in over SSH, and who may read the platform roles' logs.

(The scenario reaches its containers with docker exec; the local end-to-end suite tries the
logins themselves over SSH.)
"""

testinfra_hosts = ["ansible://web", "ansible://db"]


def test_sshd_runs_keys_only_no_root_no_forwarding_three_tries(host):
    out = host.check_output("sshd -T")
    settings = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert settings["permitrootlogin"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["allowagentforwarding"] == "no"
    assert settings["allowtcpforwarding"] == "no"
    assert settings["x11forwarding"] == "no"
    assert settings["maxauthtries"] == "3"


def test_the_login_user_escalates_with_sudo_without_a_password(host):
    assert host.user("admin").exists
    assert host.check_output("su admin -s /bin/sh -c 'sudo -n id -un'") == "root"


def test_unattended_upgrades_logs_are_readable_by_the_adm_group_only(host):
    folder = host.file("/var/log/unattended-upgrades")
    assert (folder.mode, folder.user, folder.group) == (0o750, "root", "adm")
    for name in ("unattended-upgrades.log", "unattended-upgrades-dpkg.log", "unattended-upgrades-shutdown.log"):
        log = host.file(f"/var/log/unattended-upgrades/{name}")
        assert (log.mode, log.user, log.group) == (0o640, "root", "adm"), name
