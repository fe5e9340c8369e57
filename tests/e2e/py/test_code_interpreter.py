"""Issue 15: a real code interpreter, with PyPI e2b-code-interpreter 2.11 (sync API).

`Sandbox.create()` from the code-interpreter SDK starts a `code-interpreter-v1` sandbox
(from the template's warm snapshot: the kernels already run) and `run_code` talks to the
code interpreter on port 49999 through the Stasis proxy. The kernels' state (variables,
open files, DataFrames, imported modules) is the sandbox's memory: it survives pause +
connect, auto-pause, and is copied into every snapshot and fork, each then on its own.
"""
import time

import pytest
from e2b import TimeoutException
from e2b_code_interpreter import Sandbox

from conftest import Sandboxes, run_tag, wait_for

STATE = """
import json as json_module_alias
import pandas as pd
x = 41
handle = open('/home/user/handle.txt', 'w')
handle.write('before-')
df = pd.DataFrame({'a': [1, 2, 3], 'b': ['p', 'q', 'r']})
"""

CHECK = """
handle.write('after')
handle.flush()
(x + 1, open('/home/user/handle.txt').read(), int(df['a'].sum()), json_module_alias.dumps([1]))
"""


@pytest.fixture
def interpreters():
    s = Sandboxes(Sandbox)
    try:
        yield s
    finally:
        s.cleanup()


def text(execution):
    assert execution.error is None, execution.error
    return execution.text


def test_the_users_flow_state_survives_pause_and_connect(interpreters):
    sbx = interpreters.create(metadata={"tag": run_tag("ci-pause")})
    assert text(sbx.run_code("x = 41")) is None
    assert text(sbx.run_code("x + 1")) == "42"
    assert sbx.run_code(STATE).error is None
    assert sbx.pause() is True
    sbx = Sandbox.connect(sbx.sandbox_id, timeout=300)
    assert text(sbx.run_code(CHECK)) == "(42, 'before-after', 6, '[1]')"
    # Twice more, with commands and files between (the default SDK user).
    for i in range(2):
        sbx.files.write(f"/home/user/cycle-{i}.txt", str(i))
        assert sbx.commands.run("whoami").stdout.strip() == "user"
        assert text(sbx.run_code(f"x += 1; open('/home/user/cycle-{i}.txt').read()")) == str(i)
        assert sbx.pause() is True
        sbx = Sandbox.connect(sbx.sandbox_id, timeout=300)
    assert text(sbx.run_code("x")) == "43"


def test_auto_pause_keeps_the_kernels_state(interpreters):
    sbx = interpreters.create(timeout=4, lifecycle={"on_timeout": "pause"}, metadata={"tag": run_tag("ci-auto")})
    assert sbx.run_code(STATE).error is None
    wait_for("auto-pause", lambda: Sandbox.get_info(sbx.sandbox_id).state.value == "paused", timeout=60, every=0.5)
    sbx = Sandbox.connect(sbx.sandbox_id, timeout=300)
    assert text(sbx.run_code(CHECK)) == "(42, 'before-after', 6, '[1]')"


def test_snapshots_and_forks_carry_the_state_and_each_diverges(interpreters):
    src = interpreters.create(metadata={"tag": run_tag("ci-snap")})
    assert src.run_code(STATE).error is None
    snap = src.create_snapshot()
    try:
        a = interpreters.create(template=snap.snapshot_id)
        b = interpreters.create(template=snap.snapshot_id)
        forks = [interpreters.keep(f) for f in src.fork(count=1, timeout=300)]
        copies = [a, b, *forks]
        for i, c in enumerate(copies):
            assert text(c.run_code(f"x = 100 + {i}; x")) == str(100 + i)
        assert text(src.run_code("x")) == "41", "the source keeps its own"
        assert [text(c.run_code("x")) for c in copies] == ["100", "101", "102"]
        assert text(a.run_code("int(df['a'].sum()), json_module_alias.dumps(2)")) == "(6, '2')"
        # A file the source held open for writing stays writable in each copy, each its own.
        for i, c in enumerate(copies):
            assert text(c.run_code(f"handle.write('copy{i}'); handle.flush(); open('/home/user/handle.txt').read()")) == (
                f"before-copy{i}"
            )
    finally:
        Sandbox.delete_snapshot(snap.snapshot_id)


def test_charts_come_back_as_png_and_as_parsed_charts(interpreters):
    sbx = interpreters.create()
    ex = sbx.run_code(
        """
import matplotlib.pyplot as plt
plt.figure()
plt.plot([1, 2, 3], [2, 4, 8], label='growth')
plt.title('Growth')
plt.xlabel('day')
plt.ylabel('count')
plt.legend()
plt.show()
"""
    )
    assert ex.error is None, ex.error
    charts = [r for r in ex.results if r.png]
    assert len(charts) == 1, ex.results
    png = charts[0]
    assert len(png.png) > 1000 and "png" in png.formats(), png.formats()
    chart = png.chart
    assert chart is not None, "the SDK parsed a chart"
    assert chart.type.value == "line" and chart.title == "Growth", chart.to_dict()
    assert (chart.x_label, chart.y_label) == ("day", "count")
    assert [e.label for e in chart.elements] == ["growth"]
    assert [tuple(map(float, p)) for p in chart.elements[0].points] == [(1, 2), (2, 4), (3, 8)]


def test_rich_results_dataframes_and_streams(interpreters):
    sbx = interpreters.create()
    out, err = [], []
    ex = sbx.run_code(
        "import sys, pandas as pd\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n"
        "pd.DataFrame({'a': [1, 2]})",
        on_stdout=lambda m: out.append(m.line),
        on_stderr=lambda m: err.append(m.line),
    )
    assert ex.error is None, ex.error
    assert "".join(out) == "to stdout\n" and "".join(err) == "to stderr\n", (out, err)
    assert "".join(ex.logs.stdout) == "to stdout\n"
    main = [r for r in ex.results if r.is_main_result]
    assert len(main) == 1 and "<table" in (main[0].html or ""), ex.results
    assert ex.execution_count and ex.execution_count >= 1
    md = sbx.run_code("from IPython.display import Markdown, Latex, JSON\ndisplay(Markdown('**b**'), Latex(r'$x^2$'))")
    assert [r.markdown for r in md.results if r.markdown] == ["**b**"], md.results
    assert [r.latex for r in md.results if r.latex] == ["$x^2$"], md.results


def test_an_exception_is_an_error_and_the_context_goes_on(interpreters):
    sbx = interpreters.create()
    assert sbx.run_code("x = 41").error is None
    ex = sbx.run_code("1 / 0")
    assert ex.error is not None
    assert ex.error.name == "ZeroDivisionError" and "division by zero" in ex.error.value
    assert "ZeroDivisionError" in ex.error.traceback
    assert text(sbx.run_code("x + 1")) == "42"


def test_a_run_that_times_out_leaves_the_context_usable(interpreters):
    sbx = interpreters.create()
    assert sbx.run_code("x = 41").error is None
    t0 = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.run_code("import time\nwhile True: time.sleep(0.1)", timeout=2)
    assert time.monotonic() - t0 < 20
    # The kernel was interrupted: the next run does not wait behind the endless loop.
    t0 = time.monotonic()
    assert text(sbx.run_code("x + 1")) == "42"
    assert time.monotonic() - t0 < 10


def test_env_vars_apply_to_one_run_only(interpreters):
    sbx = interpreters.create(envs={"SANDBOX_WIDE": "yes"})
    # A string result loses its quotes, as with E2B's server (and its SDK tests).
    assert text(sbx.run_code("import os; os.environ.get('FOO')", envs={"FOO": "bar"})) == "bar"
    assert text(sbx.run_code("os.environ.get('FOO')")) is None
    assert text(sbx.run_code("os.environ.get('SANDBOX_WIDE')")) == "yes"


def test_contexts_languages_and_cwd(interpreters):
    sbx = interpreters.create()
    ctx = sbx.create_code_context(cwd="/tmp", language="python")
    assert ctx.language == "python" and ctx.cwd == "/tmp"
    assert text(sbx.run_code("import os; os.getcwd()", context=ctx)) == "/tmp"
    assert text(sbx.run_code("y = 5", context=ctx)) is None
    assert ctx.id in [c.id for c in sbx.list_code_contexts()]
    with pytest.raises(Exception):
        sbx.run_code("1", context=ctx, language="python")
    sbx.restart_code_context(ctx)
    assert sbx.run_code("y", context=ctx).error.name == "NameError"
    sbx.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in sbx.list_code_contexts()]

    # One statement per line: deno jupyter (2.9.6) gives no result for `const a = 20; a`.
    assert text(sbx.run_code("const a = 20\na * 2 + 2", language="js")) == "42"
    assert text(sbx.run_code("const n: number = 6\nn * 7", language="ts")) == "42"
    bash = sbx.run_code("echo hello from bash && pwd", language="bash")
    assert bash.error is None and "".join(bash.logs.stdout) == "hello from bash\n/home/user\n", bash.logs
    assert text(sbx.run_code("import getpass; getpass.getuser()")) == "user"
