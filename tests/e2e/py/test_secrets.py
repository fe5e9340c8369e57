"""Secrets with PyPI e2b 2.63 (sync API): Secret.create / get_info / exists / update /
list / destroy, Secret.fill, and network.rules naming secrets at Sandbox.create and in
update_network. Values are write-only: no answer of the API carries one."""
import os

import httpx
import pytest
from e2b import Sandbox, Secret
from e2b.exceptions import SecretException, SecretNotFoundException

from conftest import drain, run_tag

VALUE = "sk-py-" + "v" * 24


def raw_get(path):
    """The API's answer as text, outside the SDK (which parses only known fields)."""
    r = httpx.get(os.environ["E2B_API_URL"] + path, headers={"X-API-Key": os.environ["E2B_API_KEY"]})
    return r.status_code, r.text


@pytest.fixture
def secret_name():
    name = run_tag("pysec")
    try:
        yield name
    finally:
        Secret.destroy(name)


def test_secret_crud_without_ever_reading_a_value(secret_name):
    info = Secret.create(secret_name.upper(), VALUE, metadata={"env": "test"})
    assert info.secret_id.startswith("sec_")
    assert info.name == secret_name, "names are stored lower-cased"
    assert (info.version, info.metadata) == (1, {"env": "test"})
    assert info.created_at == info.updated_at

    assert Secret.get_info(info.secret_id).name == secret_name
    assert Secret.get_info(secret_name).secret_id == info.secret_id
    assert Secret.exists(secret_name) and Secret.exists(info.secret_id)
    assert not Secret.exists(secret_name + "-missing")
    with pytest.raises(SecretNotFoundException):
        Secret.get_info(secret_name + "-missing")
    with pytest.raises(SecretNotFoundException):
        Secret.update(secret_name + "-missing", "x")

    # A second secret of the same name (any case) is refused: 409.
    with pytest.raises(SecretException, match="already exists"):
        Secret.create(secret_name, "other")
    # Names the SDK's Secret.fill refuses are refused by the server too, as is sec_.
    for bad in ("a{b", "sec_" + secret_name):
        with pytest.raises(SecretException):
            Secret.create(bad, "x")
    with pytest.raises(SecretException, match="control characters"):
        Secret.create(secret_name + "-2", "a\r\nX-Injected: 1")

    updated = Secret.update(secret_name, VALUE + "-2")
    assert (updated.secret_id, updated.version, updated.metadata) == (info.secret_id, 2, {"env": "test"})
    updated = Secret.update(info.secret_id, VALUE + "-3", metadata={"env": "prod"})
    assert (updated.version, updated.metadata) == (3, {"env": "prod"})
    assert updated.updated_at >= updated.created_at

    # Listed (page by page), with metadata only.
    others = [Secret.create(f"{secret_name}-{i}", VALUE) for i in range(2)]
    try:
        items, pages = drain(Secret.list(limit=1))
        mine = [s for s in items if s.name.startswith(secret_name)]
        assert sorted(s.name for s in mine) == sorted([secret_name] + [o.name for o in others])
        assert pages >= 3
        # No read surface returns the value: listing, info by id and by name.
        for path in ("/secrets", "/secrets?limit=1", f"/secrets/{info.secret_id}", f"/secrets/{secret_name}"):
            status, text = raw_get(path)
            assert status == 200 and VALUE not in text and "value" not in text, (path, text)
    finally:
        for o in others:
            assert Secret.destroy(o.secret_id) is True

    assert Secret.destroy(secret_name) is True
    assert Secret.destroy(secret_name) is False
    assert not Secret.exists(info.secret_id)


def test_fill_formats_the_placeholder():
    assert Secret.fill("openai") == "${e2b.secrets.openai}"


def test_rules_name_existing_secrets_and_show_as_sent(sandboxes, secret_name):
    Secret.create(secret_name, VALUE)
    header = {"Authorization": f"Bearer {Secret.fill(secret_name)}"}
    rules = {"API.example.com": [{"transform": {"headers": header}}]}
    # A placeholder naming no secret is refused at create, before anything is made.
    with pytest.raises(Exception, match="which does not exist"):
        sandboxes.create(network={"rules": {"a.example.com": [{"transform": {"headers": {"X": "${e2b.secrets.nope-" + secret_name + "}"}}}]}})
    with pytest.raises(Exception, match="not a domain name"):
        sandboxes.create(network={"rules": {"*": [{"transform": {"headers": header}}]}})

    sbx = sandboxes.create(network={"rules": rules})
    want = {"api.example.com": [{"transform": {"headers": header}}]}
    assert Sandbox.get_info(sbx.sandbox_id).network["rules"] == want
    status, text = raw_get(f"/sandboxes/{sbx.sandbox_id}")
    assert status == 200 and VALUE not in text

    # update_network replaces the rules; one that leaves them out clears them.
    sbx.update_network({"rules": {"*.example.org": [{"transform": {"headers": {"X-Key": Secret.fill(secret_name)}}}]}})
    assert list(Sandbox.get_info(sbx.sandbox_id).network["rules"]) == ["*.example.org"]
    with pytest.raises(Exception, match="which does not exist"):
        sbx.update_network({"rules": {"a.example.com": [{"transform": {"headers": {"X": "${e2b.secrets.nope}"}}}]}})
    assert list(Sandbox.get_info(sbx.sandbox_id).network["rules"]) == ["*.example.org"], "a refused update changes nothing"
    sbx.update_network({"allow_out": ["10.1.2.3"]})
    assert "rules" not in Sandbox.get_info(sbx.sandbox_id).network
