"""The scenario's secrets (the database password and the API token, generated into its state
directory) are never printed: not by any playbook run of these tests (conftest.playbook checks
every one, run with -v), not in the journals of the hosts, not in nginx's or PostgreSQL's logs.

It runs after test_lifecycle.py (pytest runs files in name order), so the logs hold every
deploy, rollback and failed release of that module; it passes on its own as well.
"""
import pytest

from conftest import DB, WEB, assert_no_secret, on_host, secrets


def test_the_secrets_checked_are_the_ones_the_service_runs_with():
    # Otherwise every test below would pass by looking for the wrong values. The master password
    # is proven by the converge itself: the db_access role logs in with it.
    env = on_host(WEB, "cat /etc/togglemaster/togglemaster.env")
    for name, value in secrets().items():
        in_use = value in env
        if name == "db_master_password":
            assert not in_use, "the service's env-file holds the database master password"
        else:
            assert in_use, f"the scenario's {name} is not in the service's env-file"


def test_the_service_journal_holds_no_secret():
    journal = on_host(WEB, "journalctl -u togglemaster --no-pager")
    assert "togglemaster.access" in journal, "the service logged no request: nothing was checked"
    assert_no_secret(f"journal of togglemaster on {WEB}", journal)


@pytest.mark.parametrize("container", [WEB, DB])
def test_the_whole_journal_of_the_host_holds_no_secret(container):
    # Modules log their arguments unless no_log hides them; sudo logs every command it runs.
    journal = on_host(container, "journalctl --no-pager")
    assert "Invoked with" in journal and "sudo" in journal, f"{container}: no module run was logged: nothing was checked"
    assert_no_secret(f"journal of {container}", journal)


def test_nginx_logs_hold_no_secret():
    access = on_host(WEB, "cat /var/log/nginx/togglemaster.access.log")
    # The validate role's writes carry the API token; they must be among the requests checked.
    assert '"method":"PUT"' in access, "nginx logged no authenticated write: nothing was checked"
    assert_no_secret("nginx access log", access)
    assert_no_secret("nginx error log", on_host(WEB, "cat /var/log/nginx/*error.log"))


def test_postgresql_log_holds_no_secret():
    log = on_host(DB, "cat /var/log/postgresql/postgresql-15-main.log")
    assert log.strip(), "PostgreSQL logged nothing: nothing was checked"
    assert_no_secret("PostgreSQL log", log)
