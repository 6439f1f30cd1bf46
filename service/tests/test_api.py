"""Every route and error path through HTTP (Flask's test client over a real database)."""
from __future__ import annotations

import json
import re

import pytest

from support import PREVIOUS_TOKEN, TOKEN

from togglemaster.version import BUILD_ID, VERSION

JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def create(client, name: str, headers: dict | None = None, **fields):
    return client.post("/flags", json={"name": name, **fields}, headers=headers or {})


# --- compatibility with the original service -------------------------------------------


def test_health_answers_ok_with_release_identity(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ok"
    assert body["version"] and body["build"]


def test_version_reports_version_and_build(client):
    body = client.get("/version").get_json()
    assert set(body) == {"version", "build"}


def test_create_flag_returns_original_message(client):
    resp = create(client, "dark-mode")
    assert resp.status_code == 201
    assert resp.get_json() == {"message": "Flag 'dark-mode' criada com sucesso"}
    assert resp.headers["Location"] == "/flags/dark-mode"


def test_created_flag_defaults_to_disabled(client):
    create(client, "beta")
    body = client.get("/flags/beta").get_json()
    assert body["name"] == "beta" and body["is_enabled"] is False
    assert body["description"] is None
    assert body["created_at"] and body["updated_at"]


def test_create_flag_enabled_with_description(client):
    create(client, "beta", is_enabled=True, description="rollout to 10%")
    body = client.get("/flags/beta").get_json()
    assert body["is_enabled"] is True
    assert body["description"] == "rollout to 10%"


@pytest.mark.parametrize("body", [{}, {"name": None}, {"name": ""}, {"is_enabled": True}])
def test_create_without_name_is_rejected_with_original_message(client, body):
    resp = client.post("/flags", json=body)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "O campo 'name' é obrigatório"}


def test_create_duplicate_is_a_conflict_with_original_message(client):
    create(client, "dup")
    resp = create(client, "dup")
    assert resp.status_code == 409
    assert resp.get_json() == {"error": "A flag 'dup' já existe"}


def test_list_flags_is_ordered_by_name(client):
    for name in ["charlie", "alpha", "bravo"]:
        create(client, name)
    body = client.get("/flags").get_json()
    assert [f["name"] for f in body] == ["alpha", "bravo", "charlie"]
    assert all(set(f) >= {"name", "is_enabled"} for f in body)


def test_list_flags_empty(client):
    resp = client.get("/flags")
    assert resp.status_code == 200 and resp.get_json() == []


def test_get_missing_flag_is_404_with_original_message(client):
    resp = client.get("/flags/nope")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "Flag não encontrada"}


def test_update_switches_flag_with_original_message(client):
    create(client, "f1")
    resp = client.put("/flags/f1", json={"is_enabled": True})
    assert resp.status_code == 200
    assert resp.get_json() == {"message": "Flag 'f1' atualizada"}
    assert client.get("/flags/f1").get_json()["is_enabled"] is True


def test_update_moves_updated_at_but_not_created_at(client):
    create(client, "f1")
    before = client.get("/flags/f1").get_json()
    client.put("/flags/f1", json={"is_enabled": True})
    after = client.get("/flags/f1").get_json()
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]


def test_update_description_only_when_given(client):
    create(client, "f1", description="keep me")
    client.put("/flags/f1", json={"is_enabled": True})
    assert client.get("/flags/f1").get_json()["description"] == "keep me"
    client.put("/flags/f1", json={"is_enabled": True, "description": None})
    assert client.get("/flags/f1").get_json()["description"] is None


@pytest.mark.parametrize("body", [{}, {"is_enabled": "true"}, {"is_enabled": 1}, {"is_enabled": None}, {"description": "x"}])
def test_update_without_real_boolean_is_rejected_with_original_message(client, body):
    create(client, "f1")
    resp = client.put("/flags/f1", json=body)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "O campo 'is_enabled' (booleano) é obrigatório"}
    assert client.get("/flags/f1").get_json()["is_enabled"] is False


def test_update_missing_flag_is_404(client):
    resp = client.put("/flags/ghost", json={"is_enabled": True})
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "Flag não encontrada"}


# --- delete -------------------------------------------------------------------------------


def test_delete_removes_flag(client):
    create(client, "gone")
    resp = client.delete("/flags/gone")
    assert resp.status_code == 200
    assert resp.get_json() == {"message": "Flag 'gone' removida"}
    assert client.get("/flags/gone").status_code == 404


def test_delete_missing_flag_is_404(client):
    resp = client.delete("/flags/ghost")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "Flag não encontrada"}


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["has space", "a/b", "ç", "x" * 101, "semi;colon", "tab\t"])
def test_create_with_name_outside_the_rule_is_rejected(client, name):
    resp = create(client, name)
    assert resp.status_code == 400
    assert "name" in resp.get_json()["error"]


@pytest.mark.parametrize("name", [".", ".."])
def test_create_with_a_dot_segment_name_is_rejected(client, name):
    resp = create(client, name)
    assert resp.status_code == 400
    assert resp.get_json() == {
        "error": "O campo 'name' deve ter de 1 a 100 caracteres entre A-Z, a-z, 0-9, '.', '_' e '-'"
        " e não pode ser '.' nem '..'"
    }
    assert client.get("/flags").get_json() == []


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "x" * 100, "...", ".hidden", "a..b", "..b", "b.."])
def test_create_accepts_names_within_the_rule(client, name):
    assert create(client, name).status_code == 201
    assert client.get(f"/flags/{name}").get_json()["name"] == name


@pytest.mark.parametrize("name", [1, True, ["a"], {"a": 1}])
def test_create_with_non_string_name_is_rejected(client, name):
    resp = client.post("/flags", json={"name": name})
    assert resp.status_code == 400


@pytest.mark.parametrize("value", ["true", 1, 0, None, [], {}])
def test_create_with_non_boolean_is_enabled_is_rejected(client, value):
    resp = client.post("/flags", json={"name": "f", "is_enabled": value})
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "O campo 'is_enabled' deve ser booleano"}


@pytest.mark.parametrize("value", [5, True, ["x"], "x" * 501, "nul\x00char"])
def test_create_with_invalid_description_is_rejected(client, value):
    resp = client.post("/flags", json={"name": "f", "description": value})
    assert resp.status_code == 400
    assert "description" in resp.get_json()["error"]


def test_lone_surrogate_in_description_is_rejected(client):
    resp = client.post("/flags", data='{"name": "f", "description": "\\ud800"}', headers=JSON)
    assert resp.status_code == 400


@pytest.mark.parametrize("raw", ["{", "nope", '{"name": "a",}', "NaN", '{"name": NaN}', "[" * 50000, b"\xff\xfe"])
def test_malformed_json_is_400(client, raw):
    resp = client.post("/flags", data=raw, headers=JSON)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "JSON inválido no corpo da requisição"}


@pytest.mark.parametrize("raw", ["[]", '"name"', "42", "null", "true"])
def test_non_object_body_is_400(client, raw):
    for method in (client.post, client.put):
        resp = method("/flags" if method == client.post else "/flags/x", data=raw, headers=JSON)
        assert resp.status_code == 400
        assert resp.get_json() == {"error": "O corpo da requisição deve ser um objeto JSON"}


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    resp = client.post("/flags", data='{"name": "a"}', headers=headers)
    assert resp.status_code == 415
    assert "error" in resp.get_json()


def test_json_with_charset_is_accepted(client):
    resp = client.post("/flags", data='{"name": "a"}', headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 201


def test_body_too_large_is_413(client):
    big = json.dumps({"name": "a", "description": "x" * 70_000})
    resp = client.post("/flags", data=big, headers=JSON)
    assert resp.status_code == 413
    assert resp.get_json() == {"error": "Corpo da requisição muito grande"}


def test_unknown_route_is_json_404(client):
    resp = client.get("/does/not/exist")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "Recurso não encontrado"}


def test_wrong_method_is_json_405_with_allow(client):
    resp = client.patch("/flags/x", json={})
    assert resp.status_code == 405
    assert resp.get_json() == {"error": "Método não permitido"}
    assert "PUT" in resp.headers["Allow"]
    assert client.delete("/flags").status_code == 405


@pytest.mark.parametrize("path", ["/flags/" + "x" * 101, "/flags/a%00b", "/flags/%C3%A7"])
def test_lookup_of_names_that_cannot_exist_is_404(client, path):
    assert client.get(path).status_code == 404
    assert client.put(path, json={"is_enabled": True}).status_code == 404
    assert client.delete(path).status_code == 404


@pytest.mark.parametrize("path", ["/flags/%2E", "/flags/%2E%2E", "/flags/.%2e"])
def test_dot_segment_names_in_paths_are_404_when_no_such_flag(client, path):
    assert client.get(path).get_json() == {"error": "Flag não encontrada"}
    assert client.put(path, json={"is_enabled": True}).status_code == 404
    assert client.delete(path).status_code == 404


def test_dot_segment_flags_created_before_the_rule_stay_reachable_encoded(client, db_url):
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO flags (name) VALUES ('.'), ('..')")
    for path, name in (("/flags/%2E", "."), ("/flags/%2E%2E", "..")):
        assert client.get(path).get_json()["name"] == name
        assert client.put(path, json={"is_enabled": True}).status_code == 200
        assert client.delete(path).status_code == 200
    assert client.get("/flags").get_json() == []


def test_legacy_name_outside_the_rule_stays_reachable(client, db_url):
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO flags (name) VALUES ('legacy flag')")
    assert client.get("/flags/legacy%20flag").get_json()["name"] == "legacy flag"
    assert client.put("/flags/legacy%20flag", json={"is_enabled": True}).status_code == 200
    assert client.delete("/flags/legacy%20flag").status_code == 200


# --- pagination -------------------------------------------------------------------------


def test_limit_and_offset_page_through_flags_in_name_order(client):
    names = [f"f{i:02d}" for i in range(25)]
    for name in reversed(names):
        create(client, name)
    pages = []
    for offset in range(0, 30, 10):
        pages += [f["name"] for f in client.get(f"/flags?limit=10&offset={offset}").get_json()]
    assert pages == names
    assert client.get("/flags?offset=20").get_json()[0]["name"] == "f20"
    assert client.get("/flags?limit=1000&offset=1000000").get_json() == []


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=", "limit=1.5", "limit=%2B5",
     "offset=-1", "offset=1000001", "offset=x", "limit=%D9%A3"],
)
def test_invalid_limit_or_offset_is_400(client, query):
    resp = client.get(f"/flags?{query}")
    assert resp.status_code == 400
    assert "error" in resp.get_json()


# --- ETag -------------------------------------------------------------------------------


def test_flag_etag_gives_304_until_the_flag_changes(client):
    create(client, "polled")
    first = client.get("/flags/polled")
    etag = first.headers["ETag"]
    again = client.get("/flags/polled", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    client.put("/flags/polled", json={"is_enabled": True})
    changed = client.get("/flags/polled", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_list_etag_gives_304_until_the_list_changes(client):
    create(client, "a")
    etag = client.get("/flags").headers["ETag"]
    assert client.get("/flags", headers={"If-None-Match": etag}).status_code == 304
    assert client.get("/flags", headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert client.get("/flags", headers={"If-None-Match": '"other"'}).status_code == 200
    create(client, "b")
    assert client.get("/flags", headers={"If-None-Match": etag}).status_code == 200


def test_etag_depends_on_the_page(client):
    for name in ["a", "b"]:
        create(client, name)
    first = client.get("/flags?limit=1").headers["ETag"]
    second = client.get("/flags?limit=1&offset=1").headers["ETag"]
    assert first != second


# --- write protection -------------------------------------------------------------------


def test_create_without_token_is_rejected(guarded):
    resp = create(guarded, "x")
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "Token de autenticação ausente ou inválido"}
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer ", "Bearer ç"],
)
def test_write_with_wrong_token_is_rejected(guarded, header):
    resp = guarded.post("/flags", json={"name": "x"}, headers={"Authorization": header})
    assert resp.status_code == 401


def test_update_and_delete_without_token_are_rejected(guarded):
    assert create(guarded, "x", AUTH).status_code == 201
    assert guarded.put("/flags/x", json={"is_enabled": True}).status_code == 401
    assert guarded.delete("/flags/x").status_code == 401
    assert guarded.get("/flags/x").get_json()["is_enabled"] is False


def test_writes_with_token_succeed(guarded):
    assert create(guarded, "x", AUTH).status_code == 201
    assert guarded.put("/flags/x", json={"is_enabled": True}, headers=AUTH).status_code == 200
    assert guarded.delete("/flags/x", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_reads_stay_open_with_token_configured(guarded):
    create(guarded, "x", AUTH)
    assert guarded.get("/flags").status_code == 200
    assert guarded.get("/flags/x").status_code == 200
    assert guarded.get("/health").status_code == 200


def test_during_a_rotation_the_new_and_the_previous_token_both_write(rotating):
    assert create(rotating, "x", AUTH).status_code == 201
    previous = {"Authorization": f"Bearer {PREVIOUS_TOKEN}"}
    assert rotating.put("/flags/x", json={"is_enabled": True}, headers=previous).status_code == 200
    for wrong in (f"Bearer {PREVIOUS_TOKEN}x", f"Bearer {TOKEN}{PREVIOUS_TOKEN}", "Bearer "):
        assert rotating.delete("/flags/x", headers={"Authorization": wrong}).status_code == 401
    assert rotating.delete("/flags/x", headers=previous).status_code == 200


def test_the_previous_token_alone_does_not_write(guarded):
    resp = guarded.post("/flags", json={"name": "x"}, headers={"Authorization": f"Bearer {PREVIOUS_TOKEN}"})
    assert resp.status_code == 401


def test_token_is_checked_before_the_body(guarded):
    resp = guarded.post("/flags", data="{", headers=JSON)
    assert resp.status_code == 401


# --- request id, readiness, contract --------------------------------------------------


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated and generated != "bad id with spaces"
    assert client.get("/flags/none").headers["X-Request-ID"]


def test_request_id_of_128_characters_is_echoed_and_one_of_129_replaced(client):
    longest = "r" * 128
    assert client.get("/health", headers={"X-Request-ID": longest}).headers["X-Request-ID"] == longest
    replaced = client.get("/health", headers={"X-Request-ID": longest + "r"}).headers["X-Request-ID"]
    assert "r" not in replaced and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", replaced), replaced


def test_ready_when_database_answers(client):
    resp = client.get("/ready")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready", "version": VERSION, "build": BUILD_ID}


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/ready", None),
        ("GET", "/flags", None),
        ("GET", "/flags/some", None),
        ("POST", "/flags", {"name": "some"}),
        ("PUT", "/flags/some", {"is_enabled": True}),
        ("DELETE", "/flags/some", None),
    ],
)
def test_every_503_carries_retry_after(unreachable, method, path, body):
    resp = unreachable.open(path, method=method, json=body)
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers.get("Retry-After") == "1"  # DB_PROBE_INTERVAL_MS 500, rounded up to whole seconds


def test_openapi_document_is_served(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/health", "/ready", "/version", "/flags", "/flags/{name}"} <= set(doc["paths"])


@pytest.mark.parametrize(("path", "methods"), [("/flags", {"GET", "POST"}), ("/flags/some", {"GET", "PUT", "DELETE"})])
def test_options_answers_json_naming_the_allowed_methods(client, path, methods):
    resp = client.options(path)
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    allowed = set(resp.get_json()["allow"])
    assert methods <= allowed and "OPTIONS" in allowed
    assert set(resp.headers["Allow"].split(", ")) == allowed


@pytest.mark.parametrize(
    ("forwarded", "logged"),
    [("203.0.113.7", "203.0.113.7"), ("198.51.100.9, 203.0.113.7", "203.0.113.7"), (None, "127.0.0.1")],
    ids=["one-hop", "client-wrote-its-own-header", "no-proxy"],
)
def test_the_request_log_names_the_client_behind_exactly_one_proxy(client, caplog, forwarded, logged):
    # nginx, the one proxy, connects from loopback and appends the address it saw: only that last
    # value is trusted, never what the client wrote before it.
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with caplog.at_level("INFO", logger="togglemaster.access"):
        client.get("/health", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    [record] = [r for r in caplog.records if r.name == "togglemaster.access"]
    assert record.remote_addr == logged
