"""The database host after a deploy, checked the way an operator would check it."""

testinfra_hosts = ["ansible://db"]


def test_postgresql_log_is_readable_by_postgres_and_the_adm_group_only(host):
    log = host.file("/var/log/postgresql/postgresql-15-main.log")
    assert (log.mode, log.user, log.group) == (0o640, "postgres", "adm")
