"""Volumes with PyPI e2b 2.63 (sync API): Volume.create / list / get_info / connect /
destroy, a volume's file methods, and volume_mounts at Sandbox.create: a volume outlives
its sandboxes, is kept across pause/resume, and is shared by the sandboxes that mount it."""
import pytest
from e2b import Sandbox, Volume
from e2b.exceptions import SandboxException, VolumeException

from conftest import run_tag


@pytest.fixture
def volume():
    vol = Volume.create(run_tag("vol"))
    try:
        yield vol
    finally:
        Volume.destroy(vol.volume_id)


def test_volume_outlives_sandboxes_and_survives_pause(sandboxes, volume):
    name = volume.name
    assert any(v.volume_id == volume.volume_id and v.name == name for v in Volume.list())
    assert Volume.get_info(volume.volume_id).name == name
    volume.write_file("/seed.txt", "from the api")

    a = sandboxes.create(volume_mounts={"/home/user/vol": volume})
    assert Sandbox.get_info(a.sandbox_id).volume_mounts == [{"name": name, "path": "/home/user/vol"}]
    assert a.files.read("/home/user/vol/seed.txt") == "from the api"
    r = a.commands.run("echo made-by-$(id -un) > ~/vol/note.txt && stat -c %U ~/vol/note.txt")
    assert r.stdout == "user\n"

    a.pause()
    a2 = Sandbox.connect(a.sandbox_id)
    assert a2.files.read("/home/user/vol/note.txt") == "made-by-user\n"
    a2.files.write("/home/user/vol/after.txt", "after resume")

    with pytest.raises(VolumeException, match="mounted"):
        Volume.destroy(volume.volume_id)

    b = sandboxes.create(volume_mounts={"/data": name})
    assert b.files.read("/data/after.txt") == "after resume"
    Sandbox.kill(a.sandbox_id)
    Sandbox.kill(b.sandbox_id)

    # The files stay with the volume.
    assert volume.read_file("/note.txt") == "made-by-user\n"
    assert volume.read_file("/after.txt", format="bytes") == b"after resume"
    st = volume.get_info("/note.txt")
    assert (st.type.value, st.size, st.uid, st.gid) == ("file", len("made-by-user\n"), 1000, 1000)
    assert volume.update_metadata("/note.txt", mode=0o640).mode == 0o640
    volume.make_dir("/x/y", force=True)
    assert {e.path for e in volume.list("/", depth=3)} >= {"/note.txt", "/x", "/x/y"}
    assert volume.exists("/x/y")
    volume.remove("/x")
    assert not volume.exists("/x")
    again = Volume.connect(volume.volume_id)
    assert again.read_file("/seed.txt") == "from the api"


def test_bad_volume_requests(sandboxes, volume):
    with pytest.raises(VolumeException, match="already exists"):
        Volume.create(volume.name)
    with pytest.raises(SandboxException, match="cannot be mounted"):
        sandboxes.create(volume_mounts={"/sys/x": volume})
    assert Volume.destroy("nosuchvolume") is False
