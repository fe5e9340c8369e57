"""A running sandbox's network changed through the Python SDK (`update_network`, the
`PUT /sandboxes/{id}/network` both SDKs send). Real traffic through the new rules is in
crates/stasis/tests/hardening_network.rs; here, the SDK's wire and errors."""
import pytest
from e2b import Sandbox
from e2b.exceptions import InvalidArgumentException, NotFoundException, SandboxException


def test_update_network_running_and_paused(sandboxes):
    sbx = sandboxes.create()
    sbx.update_network({"allow_out": ["10.1.2.0/24"], "deny_out": ["0.0.0.0/0"]})
    assert sbx.commands.run("echo still here").stdout == "still here\n"
    sbx.pause()
    Sandbox.update_network(sbx.sandbox_id, {"deny_out": ["10.0.0.0/8"]})
    back = Sandbox.connect(sbx.sandbox_id)
    assert back.commands.run("echo resumed").stdout == "resumed\n"
    with pytest.raises((InvalidArgumentException, SandboxException), match="not an IPv4 address or CIDR"):
        sbx.update_network({"allow_out": ["example.com"]})
    with pytest.raises((NotFoundException, SandboxException), match="not found"):
        Sandbox.update_network("nosuchsandbox0000000", {})
