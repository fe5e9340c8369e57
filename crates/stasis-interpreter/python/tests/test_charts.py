"""stasis_kernel.charts against the SDK's chart classes (e2b_code_interpreter.charts).

Every chart type matplotlib can make here is extracted, made JSON (as the kernel sends
it) and read back by the PyPI SDK's own deserializer. Run with the kernel venv's Python
(numpy, matplotlib, the SDK): ``python test_charts.py`` (tests/service.rs does).
"""
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import matplotlib  # noqa: E402

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
from e2b_code_interpreter.charts import (  # noqa: E402
    BarChart,
    BoxAndWhiskerChart,
    ChartType,
    LineChart,
    PieChart,
    ScaleType,
    ScatterChart,
    SuperChart,
    _deserialize_chart,
)

import stasis_kernel  # noqa: E402


def sdk_chart(fig):
    raw = json.loads(json.dumps(stasis_kernel.figure_chart(fig)))
    plt.close(fig)
    return _deserialize_chart(raw)


def test_line():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [2, 4, 8], label="growth")
    ax.plot([1, 2, 3], [1, 1, 1])
    ax.set_title("Growth")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("size [m]")
    c = sdk_chart(fig)
    assert isinstance(c, LineChart) and c.type == ChartType.LINE
    assert (c.title, c.x_label, c.x_unit, c.y_unit) == ("Growth", "time (s)", "s", "m")
    assert [e.label for e in c.elements] == ["growth", "Line 1"]
    assert c.elements[0].points == [(1.0, 2.0), (2.0, 4.0), (3.0, 8.0)]
    assert c.x_scale == ScaleType.LINEAR and len(c.x_ticks) == len(c.x_tick_labels) > 0


def test_datetime_and_log_scales():
    fig, ax = plt.subplots()
    days = [datetime.date(2024, 1, d) for d in (1, 2, 3)]
    ax.plot(days, [1, 10, 100])
    ax.set_yscale("log")
    c = sdk_chart(fig)
    assert c.x_scale == ScaleType.DATETIME and c.y_scale == ScaleType.LOG
    assert c.elements[0].points[0] == ("2024-01-01", 1.0)
    assert all(isinstance(t, str) for t in c.x_ticks)


def test_categorical_line():
    fig, ax = plt.subplots()
    ax.plot(["a", "b", "c"], [1, 2, 3])
    c = sdk_chart(fig)
    assert c.x_scale == ScaleType.CATEGORICAL
    assert c.elements[0].points == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


def test_scatter():
    fig, ax = plt.subplots()
    ax.scatter([1, 2], [3, 4], label="dots")
    ax.scatter([5], [6])
    c = sdk_chart(fig)
    assert isinstance(c, ScatterChart)
    assert [(e.label, e.points) for e in c.elements] == [("dots", [(1.0, 3.0), (2.0, 4.0)]), ("Series 1", [(5.0, 6.0)])]


def test_bars_vertical_grouped_and_horizontal():
    fig, ax = plt.subplots()
    ax.bar(["a", "b", "c"], [3, 1, 2], label="n")
    ax.set_xlabel("letter")
    c = sdk_chart(fig)
    assert isinstance(c, BarChart) and c.x_label == "letter"
    assert [(e.label, e.value, e.group) for e in c.elements] == [("a", 3, "n"), ("b", 1, "n"), ("c", 2, "n")]

    fig, ax = plt.subplots()
    x = [0, 1]
    ax.bar([i - 0.2 for i in x], [1, 2], width=0.4, label="2023")
    ax.bar([i + 0.2 for i in x], [3, 4], width=0.4, label="2024")
    ax.set_xticks(x, ["north", "south"])
    c = sdk_chart(fig)
    assert [(e.label, e.value, e.group) for e in c.elements] == [
        ("north", 1, "2023"), ("south", 2, "2023"), ("north", 3, "2024"), ("south", 4, "2024"),
    ]

    fig, ax = plt.subplots()
    ax.barh(["x", "y"], [5, 7])
    ax.set_xlabel("amount")
    ax.set_ylabel("item")
    c = sdk_chart(fig)
    assert [(e.label, e.value, e.group) for e in c.elements] == [("x", 5, "Group 0"), ("y", 7, "Group 0")]
    assert (c.x_label, c.y_label) == ("item", "amount"), "categories on x, as for vertical bars"


def test_pie():
    fig, ax = plt.subplots()
    ax.pie([1, 3], labels=["one", "three"])
    c = sdk_chart(fig)
    assert isinstance(c, PieChart)
    assert [(e.label, round(e.angle), e.radius) for e in c.elements] == [("one", 90, 1.0), ("three", 270, 1.0)]


def test_box_and_whisker():
    fig, ax = plt.subplots()
    ax.boxplot([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 30]], patch_artist=True)
    ax.set_xticks([1, 2], ["A", "B"])
    c = sdk_chart(fig)
    assert isinstance(c, BoxAndWhiskerChart), c
    a, b = c.elements
    assert (a.label, a.min, a.first_quartile, a.median, a.third_quartile, a.max) == ("A", 1, 2, 3, 4, 5)
    assert (b.label, b.median, b.outliers) == ("B", 4.5, [30.0])


def test_superchart_and_unknown():
    fig, (left, right) = plt.subplots(1, 2)
    left.plot([1, 2], [3, 4])
    right.imshow([[1, 2], [3, 4]])
    fig.suptitle("Both")
    c = sdk_chart(fig)
    assert isinstance(c, SuperChart) and c.title == "Both"
    assert [e.type for e in c.elements] == [ChartType.LINE, ChartType.UNKNOWN]
    fig = plt.figure()
    assert stasis_kernel.figure_chart(fig) == {}, "no axes, no chart"
    plt.close(fig)


def test_dataframe_data_and_json():
    import numpy
    import pandas

    df = pandas.DataFrame({"a": [1, 2], "b": [1.5, float("nan")], "t": pandas.to_datetime(["2024-01-01", None])})
    assert stasis_kernel.dataframe_data(df) == {"a": [1, 2], "b": [1.5, None], "t": ["2024-01-01T00:00:00", None]}
    assert stasis_kernel.json_value({"k": numpy.int64(3), 1: [numpy.float32(0.5)]}) == {"k": 3, "1": [0.5]}


if __name__ == "__main__":
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"{name}: ok")
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"{name}: FAILED: {e!r}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
