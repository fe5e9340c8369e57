"""Templates from OCI images with PyPI e2b 2.63, from the local registries run.sh starts
(images made by tests/oci/test-images.sh): from_image of a Debian (glibc) image with
copy, run_cmd, set_envs, set_start_cmd + wait_for_port, the sandbox having the files, the
env and the service right after create; from_image(..., username=, password=) of a
busybox image (no `user` in it) from a registry that wants them; wrong credentials fail
at step base."""
import os
import urllib.request

import pytest
from e2b import BuildException, Template, wait_for_port

from conftest import run_tag

REG = os.environ.get("E2E_REGISTRY")
AUTH = os.environ.get("E2E_AUTH_REGISTRY")
USER = os.environ.get("E2E_REGISTRY_USER")
PASSWORD = os.environ.get("E2E_REGISTRY_PASSWORD")


def proxied(sbx, port, path):
    req = urllib.request.Request(
        os.environ["E2B_API_URL"] + path,
        headers={"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": str(port)},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


def test_from_debian_image(sandboxes, tmp_path):
    assert REG, "run.sh starts the registry (E2E_REGISTRY)"
    (tmp_path / "index.html").write_text("python from an image\n")
    t = (
        Template(file_context_path=str(tmp_path))
        .from_image(f"{REG}/deb:1")
        .copy("index.html", "/srv/py/")
        .run_cmd("echo py-$((6*7)) > /opt/py.txt")
        .set_envs({"PY_MODE": "img"})
        .set_workdir("/srv/py")
        .set_start_cmd("python3 -m http.server 8081", wait_for_port(8081))
    )
    name = run_tag("pydeb")
    Template.build(t, name)
    sbx = sandboxes.create(template=name)
    assert proxied(sbx, 8081, "/index.html") == (200, "python from an image\n")
    assert sbx.files.read("/opt/py.txt") == "py-42\n"
    assert sbx.commands.run('echo "$DEB_MARK $PY_MODE"; whoami').stdout == "glibc img\nuser\n"


def test_from_busybox_image_with_credentials(sandboxes):
    assert AUTH, "run.sh starts the registry with htpasswd (E2E_AUTH_REGISTRY)"
    t = Template().from_image(f"{AUTH}/bb:1", username=USER, password=PASSWORD).run_cmd("echo py-bb > /srv/py.txt")
    name = run_tag("pybb")
    Template.build(t, name)
    sbx = sandboxes.create(template=name)
    assert sbx.files.read("/srv/py.txt") == "py-bb\n"
    assert sbx.commands.run("whoami; echo $OCI_GREETING").stdout == "user\nfrom-the-image\n"


def test_wrong_credentials_fail_at_base():
    name = run_tag("pybad")
    t = Template().from_image(f"{AUTH}/bb:1", username=USER, password="nope").run_cmd("true")
    with pytest.raises(BuildException) as e:
        Template.build(t, name)
    assert "refused the credentials" in str(e.value), str(e.value)
    assert not Template.exists(name)
