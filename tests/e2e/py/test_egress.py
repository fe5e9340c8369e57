"""The egress proxy through PyPI e2b 2.63: a Secret named in network.rules reaches an
HTTPS server as the rule's header, set outside the sandbox (tests/e2e/egress/echo.sh is
the server; it answers with a SHA-256 of the header). Rules set later with
update_network apply to the next connection."""
import hashlib
import json
import os

import pytest
from e2b import Secret

from conftest import run_tag

ADDR = os.environ.get("E2E_EGRESS_ADDR")
CIDR = os.environ.get("E2E_EGRESS_CIDR")
HERE = os.path.dirname(os.path.abspath(__file__))

# The client the sandbox runs: a GET of https://NAME/ sent to ADDR, verified against the
# sandbox's system bundle (tests/e2e/egress/client.py).
with open(os.path.join(HERE, "..", "egress", "client.py")) as f:
    CLIENT = f.read()


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


@pytest.mark.skipif(not ADDR, reason="no egress echo (tests/e2e/run.sh starts it)")
def test_secret_header_on_https_set_by_update_network(sandboxes):
    name = run_tag("pyegress")
    value = f"pyv-{name}"
    Secret.create(name, value)
    try:
        sbx = sandboxes.create(network={"allow_out": [CIDR]})
        sbx.files.write("/tmp/client.py", CLIENT)

        def get():
            return json.loads(sbx.commands.run(f"python3 /tmp/client.py api.egress.test {ADDR}").stdout)

        # No rules yet: the server's own certificate, which the sandbox does not trust.
        assert "error" in get()
        rules = {"api.egress.test": [{"transform": {"headers": {"X-Api-Key": Secret.fill(name)}}}]}
        sbx.update_network({"allow_out": [CIDR], "rules": rules})
        got = get()
        assert got.get("issuer") == "Stasis sandbox egress CA", got
        assert got["body"]["key_sha256"] == sha(value)
        assert got["body"]["host"] == "api.egress.test"
        # The value never enters the sandbox.
        found = sbx.commands.run(f"{{ env; grep -rl {value} /etc /tmp /home 2>/dev/null; }} | grep -c {value} || true", user="root")
        assert found.stdout.strip() == "0"
    finally:
        Secret.destroy(name)
