"""PyPI e2b-code-interpreter's Sandbox against a host-run stasis-interpreter.

No Stasis API: the Sandbox object is built directly, with E2B_SANDBOX_URL's setting
(``sandbox_url``) pointing at the service, so ``run_code`` and the context calls are the
SDK's own requests and its own ``parse_output``. Env: STASIS_TEST_URL, STASIS_TEST_TOKEN.
Run by tests/service.rs.
"""
import os
import time

from e2b import ConnectionConfig, TimeoutException
from e2b_code_interpreter import Sandbox
from e2b_code_interpreter.charts import ChartType
from packaging.version import Version

url, token = os.environ["STASIS_TEST_URL"], os.environ["STASIS_TEST_TOKEN"]
sbx = Sandbox(
    sandbox_id="local",
    sandbox_domain=None,
    envd_version=Version("0.4.0"),
    envd_access_token=token,
    traffic_access_token=None,
    connection_config=ConnectionConfig(sandbox_url=url, api_key="unused"),
)


def check(name, cond, detail=""):
    if not cond:
        raise SystemExit(f"python sdk: {name} failed: {detail}")
    print(f"python sdk: {name}: ok")


out = []
ex = sbx.run_code("v = 41\nprint('streamed')", on_stdout=lambda m: out.append(m.line))
check("stdout callback", out == ["streamed\n"] and ex.logs.stdout == ["streamed\n"], (out, ex))
check("state", sbx.run_code("v + 1").text == "42")
check("execution_count", isinstance(ex.execution_count, int) and ex.execution_count >= 1, ex.execution_count)
err = sbx.run_code("1/0").error
check("error", err is not None and err.name == "ZeroDivisionError" and "ZeroDivisionError" in err.traceback, err)

ex = sbx.run_code(
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['a', 'b', 'c'], [3, 1, 2], label='n')\n"
    "ax.set_title('Bars')\nplt.show()"
)
figs = [r for r in ex.results if r.png]
check("png result", len(figs) == 1 and "png" in figs[0].formats() and "chart" in figs[0].formats(), ex.results)
chart = figs[0].chart
check(
    "bar chart",
    chart.type == ChartType.BAR and chart.title == "Bars"
    and [(e.label, e.value, e.group) for e in chart.elements] == [("a", 3.0, "n"), ("b", 1.0, "n"), ("c", 2.0, "n")],
    chart.to_dict(),
)
ex = sbx.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
main = [r for r in ex.results if r.is_main_result]
check("dataframe", len(main) == 1 and "<table" in main[0].html and main[0].data == {"a": [1, 2]}, ex.results)
ex = sbx.run_code("from IPython.display import Markdown, Latex\ndisplay(Markdown('**b**'), Latex(r'$x^2$'))")
check("markdown, latex", [r.markdown for r in ex.results if r.markdown] == ["**b**"]
      and [r.latex for r in ex.results if r.latex] == ["$x^2$"], ex.results)

check("envs", sbx.run_code("import os; os.getenv('E1')", envs={"E1": "x"}).text == "x")
check("envs restored", sbx.run_code("os.getenv('E1', 'none')").text == "none")

check("js", sbx.run_code("const j = 6\nj * 7", language="js").text == "42")
bash = sbx.run_code("echo hi", language="bash")
check("bash", bash.logs.stdout == ["hi\n"], bash.logs)

ctx = sbx.create_code_context(language="python", cwd="/tmp")
check("context", ctx.language == "python" and ctx.cwd == "/tmp" and sbx.list_code_contexts()[-1].id == ctx.id)
check("context cwd", sbx.run_code("import os; w = 1; os.getcwd()", context=ctx).text == "/tmp")
sbx.restart_code_context(ctx)
check("restart", sbx.run_code("w", context=ctx).error.name == "NameError")
sbx.remove_code_context(ctx)
check("remove", ctx.id not in [c.id for c in sbx.list_code_contexts()])

t0 = time.monotonic()
try:
    sbx.run_code("import time\nwhile True: time.sleep(0.1)", timeout=2)
    check("timeout", False, "no TimeoutException")
except TimeoutException:
    pass
check("run after a timeout", sbx.run_code("v", timeout=10).text == "41")
check("timeout took", time.monotonic() - t0 < 12, time.monotonic() - t0)
