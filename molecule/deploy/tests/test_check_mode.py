"""deploy.yml in check mode on the converged hosts, from the control node: it reports nothing to
change and changes nothing.

It runs before test_lifecycle.py (pytest runs files in name order), on the release converge put
live; test_lifecycle.py puts that release back when it is done, so a re-run of verify finds the
same state.
"""
from conftest import DB, WEB, live_build, on_host, playbook, recap

HOSTS = {"localhost", WEB, DB}


def test_deploy_in_check_mode_with_diff_reports_no_change_on_any_host():
    live = live_build()
    records = on_host(WEB, "readlink /opt/togglemaster/current; cat /opt/togglemaster/RELEASE /opt/togglemaster/HISTORY")
    proc = playbook("deploy.yml", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = recap(proc.stdout)
    assert set(counts) == HOSTS, counts
    assert {host: failed for host, (_, _, failed) in counts.items()} == dict.fromkeys(HOSTS, 0)
    assert {host: changed for host, (changed, _, _) in counts.items()} == dict.fromkeys(HOSTS, 0), proc.stdout[-3000:]
    assert live_build() == live
    assert on_host(WEB, "readlink /opt/togglemaster/current; cat /opt/togglemaster/RELEASE /opt/togglemaster/HISTORY") == records
