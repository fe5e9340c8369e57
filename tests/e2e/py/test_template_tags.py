"""Template tags with PyPI e2b 2.63 (issues 14 and 16): Template.build with 'name:tag'
and tags=, Sandbox.create('name:tag') getting that build after later builds,
Template.assign_tags / remove_tags / get_tags / exists, and a sandbox made from a tag
running on after the tag goes."""
import urllib.request

import pytest
from e2b import Sandbox, Template, TemplateException

from conftest import run_tag


def writes(text):
    return Template().from_template("base").run_cmd(f"echo {text} > /opt/v.txt")


def read_from(sandboxes, template):
    sbx = sandboxes.create(template=template)
    try:
        return sbx.files.read("/opt/v.txt").strip()
    finally:
        Sandbox.kill(sbx.sandbox_id)


def delete_template(name):
    import os

    req = urllib.request.Request(
        f"{os.environ['E2B_API_URL']}/templates/{name}",
        method="DELETE",
        headers={"X-API-KEY": os.environ["E2B_API_KEY"]},
    )
    try:
        urllib.request.urlopen(req, timeout=30).close()
    except Exception:  # noqa: BLE001 - cleanup
        pass


def test_tags_name_builds(sandboxes):
    name = run_tag("pytags")
    try:
        one = Template.build(writes("one"), name)
        assert one.tags == ["default"]
        two = Template.build(writes("two"), f"{name}:v2", tags=["rc"])
        assert sorted(two.tags) == ["rc", "v2"]

        sbx_v2 = sandboxes.create(template=f"{name}:v2")
        Template.build(writes("three"), name)
        assert read_from(sandboxes, name) == "three"
        assert read_from(sandboxes, f"{name}:v2") == "two"
        assert read_from(sandboxes, f"{name}:rc") == "two"

        tags = {t.tag: t.build_id for t in Template.get_tags(name)}
        assert tags["v2"] == tags["rc"] == two.build_id and tags["default"] != one.build_id
        assert Template.exists(name) and Template.exists(f"{name}:rc")
        assert not Template.exists(f"{name}:nope")

        info = Template.assign_tags(f"{name}:rc", ["prod"])
        assert (info.build_id, info.tags) == (two.build_id, ["prod"])
        assert read_from(sandboxes, f"{name}:prod") == "two"

        Template.remove_tags(name, ["v2", "rc", "prod"])
        assert sorted(t.tag for t in Template.get_tags(name)) == ["default"]
        with pytest.raises(Exception, match="not found"):
            Sandbox.create(f"{name}:v2", timeout=60)
        # Its build retired: the sandbox made from it runs on its layers, across a pause.
        sbx_v2.pause()
        back = Sandbox.connect(sbx_v2.sandbox_id)
        assert back.files.read("/opt/v.txt") == "two\n"

        with pytest.raises(TemplateException, match="default"):
            Template.remove_tags(name, "default")
        with pytest.raises(TemplateException):
            Template.assign_tags(name, "bad tag")
        with pytest.raises(TemplateException, match="made by setup"):
            Template.assign_tags("base", "mine")
    finally:
        delete_template(name)
