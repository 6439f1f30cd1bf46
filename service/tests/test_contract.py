"""The API against its OpenAPI document: schema-driven fuzzing (schemathesis) and a
property-based fuzz of raw inputs (hypothesis). No input may produce a 5xx, and every
response must match the document (status code, content type, body schema, headers)."""
from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = json.loads(resources.files("togglemaster").joinpath("openapi.json").read_text())
FUZZ_SETTINGS = settings(
    max_examples=60,
    database=None,  # no .hypothesis directory in the working tree
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --- schemathesis: cases generated from /openapi.json ----------------------------------


@pytest.fixture
def seeded(db_url, clean):
    """Some flags to read back, including one with a legacy name outside today's rule."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO flags (name, is_enabled, description) VALUES"
            " ('0', true, NULL), ('a', false, 'x'), ('legacy name', true, 'old'), ('zz-top', false, '')"
        )


schema = schemathesis.openapi.from_dict(DOC)
schema.config.generation.update(modes=["positive", "negative"], max_examples=40, database="none")


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_openapi_document(case, guarded_app, seeded):
    case.operation.schema.app = guarded_app  # in-process WSGI calls against the real database
    case.call_and_validate(headers=AUTH, app=guarded_app)


# --- hypothesis: raw bodies, names and queries, validated against the document ----------


def _operation(method: str, path: str) -> dict:
    for template, item in DOC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the document")


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        target = DOC
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _jsonschema(node):
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes a "null" type."""
    if isinstance(node, list):
        return [_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def assert_documented(method: str, path: str, resp) -> None:
    assert resp.status_code < 500, (method, path, resp.status_code, resp.data[:300])
    operation = _operation(method, path)
    documented = operation["responses"]
    assert str(resp.status_code) in documented, (method, path, resp.status_code, resp.data[:300])
    spec = _resolve(documented[str(resp.status_code)])
    if "content" not in spec:
        assert resp.data == b""
        return
    assert resp.mimetype == "application/json"
    body_schema = _jsonschema(dict(spec["content"]["application/json"]["schema"], components=DOC["components"]))
    jsonschema.validate(resp.get_json(), body_schema, cls=jsonschema.Draft7Validator)
    for header in spec.get("headers", {}):
        if header != "Location" or resp.status_code == 201:
            assert header in resp.headers, (method, path, header)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.from_regex(r"\A[A-Za-z0-9._-]{1,100}\Z"), json_values, st.text(max_size=120)),
            "is_enabled": st.one_of(st.booleans(), json_values),
            "description": st.one_of(st.none(), st.text(max_size=600), json_values),
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=200),
)
names = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9._-]{1,100}\Z"),
    st.text(min_size=1, max_size=130).filter(lambda s: "/" not in s and s not in (".", "..")),
)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "application/merge-patch+json", ""])


@given(body=bodies, content_type=content_types, method=st.sampled_from(["POST", "PUT"]), name=names)
@FUZZ_SETTINGS
def test_random_write_requests_never_fail_with_5xx(guarded_app, seeded, body, content_type, method, name):
    client = guarded_app.test_client()
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    from urllib.parse import quote

    path = "/flags" if method == "POST" else f"/flags/{quote(name, safe='')}"
    resp = client.open(path, method=method, data=body, headers=headers)
    assert_documented(method, "/flags" if method == "POST" else "/flags/x", resp)


@given(name=names, method=st.sampled_from(["GET", "DELETE"]))
@FUZZ_SETTINGS
def test_random_names_in_paths_never_fail_with_5xx(guarded_app, seeded, name, method):
    from urllib.parse import quote

    resp = guarded_app.test_client().open(f"/flags/{quote(name, safe='')}", method=method, headers=AUTH)
    assert_documented(method, "/flags/x", resp)


@given(query=st.dictionaries(st.sampled_from(["limit", "offset", "other"]), st.text(max_size=12), max_size=3))
@FUZZ_SETTINGS
def test_random_list_queries_never_fail_with_5xx(guarded_app, seeded, query):
    resp = guarded_app.test_client().get("/flags", query_string=query)
    assert_documented("GET", "/flags", resp)


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/health"), ("GET", "/version"), ("GET", "/ready"), ("GET", "/flags"), ("GET", "/openapi.json")],
)
def test_simple_routes_match_the_document(client, seeded, method, path):
    assert_documented(method, path, client.open(path, method=method))


def test_every_documented_operation_exists(client):
    for template, item in DOC["paths"].items():
        path = template.replace("{name}", "x")
        for method in item:
            if method == "parameters":
                continue
            resp = client.open(path, method=method.upper(), json={"name": "x", "is_enabled": True})
            assert resp.status_code not in (404, 405) or resp.get_json() == {"error": "Flag não encontrada"}, (method, path)


@pytest.mark.parametrize("path", ["/flags/0", "/flags/a", "/flags/legacy%20name", "/flags?limit=2&offset=1"])
def test_flag_reads_match_the_document(client, seeded, path):
    resp = client.get(path)
    assert resp.status_code == 200
    assert_documented("GET", path.split("?")[0], resp)
    etag = resp.headers["ETag"]
    assert_documented("GET", path.split("?")[0], client.get(path, headers={"If-None-Match": etag}))
