"""The base role on every host: Python venv, security upgrades, key-only sshd."""

testinfra_hosts = ["all"]


def _sshd_effective(host) -> dict[str, str]:
    out = host.check_output("sshd -T")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_sshd_refuses_password_logins(host):
    settings = _sshd_effective(host)
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitrootlogin"] == "no"  # base_sshd_permit_root_login's default


def test_sshd_is_running(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_unattended_upgrades_is_installed_and_enabled(host):
    assert host.package("unattended-upgrades").is_installed
    assert host.service("unattended-upgrades").is_enabled
    auto = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto
    assert 'APT::Periodic::Update-Package-Lists "1";' in auto
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_python_can_make_a_venv(host):
    assert host.package("python3-venv").is_installed
    host.run_test("rm -rf /tmp/venv-probe")
    result = host.run("python3 -m venv /tmp/venv-probe && /tmp/venv-probe/bin/python -c 'import sys; print(sys.prefix)'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "/tmp/venv-probe"


def test_time_sync_is_enabled(host):
    assert host.package("systemd-timesyncd").is_installed
    assert host.service("systemd-timesyncd").is_enabled
