"""Custom templates with PyPI e2b 2.63: Template().from_template('base') with copy,
run_cmd, set_envs, set_workdir, set_start_cmd + wait_for_port, Template.build with its
logs streamed; the sandbox has the files, the env and the service answering through the
proxy right after create; a rebuild comes from the cache; a failing step says which."""
import os
import time
import urllib.request

import pytest
from e2b import BuildException, Template, wait_for_port

from conftest import run_tag


def proxied(sbx, port, path):
    req = urllib.request.Request(
        os.environ["E2B_API_URL"] + path,
        headers={"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": str(port)},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


def app_template(ctx):
    return (
        Template(file_context_path=str(ctx))
        .from_template("base")
        .copy("index.html", "/srv/www/")
        .run_cmd("echo py-$((6*7)) > /opt/py.txt")
        .set_envs({"PY_GREETING": "hello-py"})
        .set_workdir("/srv/www")
        .set_start_cmd("python3 -m http.server 8080", wait_for_port(8080))
    )


def test_build_create_cache(sandboxes, tmp_path):
    (tmp_path / "index.html").write_text("python template\n")
    name = run_tag("pyapp")
    logs = []
    Template.build(app_template(tmp_path), name, on_build_logs=lambda e: logs.append(e.message))
    assert any("RUN echo py-" in line for line in logs), logs

    sbx = sandboxes.create(template=name)
    assert proxied(sbx, 8080, "/index.html") == (200, "python template\n")
    assert sbx.files.read("/opt/py.txt") == "py-42\n"
    assert sbx.commands.run("echo $PY_GREETING").stdout == "hello-py\n"

    again = []
    t0 = time.monotonic()
    Template.build(app_template(tmp_path), name, on_build_logs=lambda e: again.append(e.message))
    assert sum("CACHED" in line for line in again) == 3, again
    assert time.monotonic() - t0 < 30


def test_failing_step_names_itself_and_publishes_nothing():
    name = run_tag("pybad")
    t = Template().from_template("base").run_cmd("echo py-boom; exit 5")
    with pytest.raises(BuildException) as e:
        Template.build(t, name)
    assert "step 1" in str(e.value) and "py-boom" in str(e.value), str(e.value)
    assert not Template.exists(name)
