"""matplotlib figures as the chart objects of E2B's code-interpreter SDKs.

The schema is the SDKs' (``e2b_code_interpreter/charts.py``; the JS SDK passes the
object through): every chart has ``type``, ``title`` and ``elements``;

- 2D charts (line, scatter, bar, box_and_whisker) add ``x_label``, ``y_label``,
  ``x_unit``, ``y_unit`` (a unit is what a label holds in ``(...)`` or ``[...]``);
- point charts (line, scatter) add ``x_ticks``, ``x_tick_labels``, ``x_scale`` and the
  same for y; elements are ``{label, points: [[x, y], ...]}``;
- bar: ``{label, group, value}``; pie: ``{label, angle, radius}``;
  box_and_whisker: ``{label, min, first_quartile, median, third_quartile, max,
  outliers}``;
- superchart: a figure with several axes, ``elements`` are their charts;
- unknown: anything else (images, fills, mixed artists), with no elements.

Scales are ``linear``, ``log``, ``symlog``, ``logit``, ``function``, ``functionlog``,
``asinh``, ``datetime`` or ``categorical``; datetime ticks and values are ISO 8601.
What kind of chart an Axes is follows from its artists: only lines → line; only path
collections → scatter; only wedges → pie; only rectangles → bar; boxes drawn as patches
with their lines → box_and_whisker.
"""

import datetime
import re

_UNIT = re.compile(r"\s\((.*?)\)|\[(.*?)\]")


def figure_to_chart(fig):
    axes = fig.get_axes()
    if not axes:
        return {}
    _draw(fig)
    if len(axes) > 1:
        suptitle = getattr(fig, "_suptitle", None)
        title = suptitle.get_text() if suptitle is not None else ""
        return {"type": "superchart", "title": title or None, "elements": [axes_to_chart(ax) for ax in axes]}
    return axes_to_chart(axes[0])


def _draw(fig):
    # Tick labels are only filled in by a draw; the PNG formatter usually drew already.
    try:
        fig.draw_without_rendering()
    except Exception:
        pass


def axes_to_chart(ax):
    kind = chart_type(ax)
    if kind == "line":
        return _line(ax)
    if kind == "scatter":
        return _scatter(ax)
    if kind == "bar":
        return _bar(ax)
    if kind == "pie":
        return _pie(ax)
    if kind == "box_and_whisker":
        return _box(ax)
    return {"type": "unknown", "title": _title(ax), "elements": []}


def _is_grid_line(line):
    # Grid lines are drawn by the axis, but lines the user drew at a tick from edge to edge
    # look the same: a two-point horizontal or vertical line spanning the whole axis.
    x, y = line.get_xdata(orig=False), line.get_ydata(orig=False)
    if len(x) != 2:
        return False
    return line.get_gid() == "grid" or (
        (x[0] == x[1] and tuple(sorted(y)) == (0, 1)) or (y[0] == y[1] and tuple(sorted(x)) == (0, 1))
    )


def chart_type(ax):
    from matplotlib.collections import PathCollection
    from matplotlib.patches import PathPatch, Rectangle, Wedge

    lines = [ln for ln in ax.lines if not _is_grid_line(ln)]
    collections, patches = list(ax.collections), list(ax.patches)
    if ax.images or getattr(ax, "tables", None):
        return "unknown"
    if lines and not collections and not patches:
        return "line"
    if patches and not collections and all(isinstance(p, PathPatch) for p in patches) and lines:
        return "box_and_whisker"
    if collections and not patches and not lines and all(isinstance(c, PathCollection) for c in collections):
        return "scatter"
    if patches and not collections and not lines:
        if all(isinstance(p, Wedge) for p in patches):
            return "pie"
        if all(isinstance(p, Rectangle) for p in patches):
            return "bar"
    return "unknown"


def _title(ax):
    return ax.get_title() or None


def _unit(label):
    if not label:
        return None
    m = _UNIT.search(label)
    return (m.group(1) or m.group(2)) if m else None


def _chart2d(ax, kind):
    x_label, y_label = ax.get_xlabel() or None, ax.get_ylabel() or None
    return {
        "type": kind,
        "title": _title(ax),
        "x_label": x_label,
        "y_label": y_label,
        "x_unit": _unit(x_label),
        "y_unit": _unit(y_label),
        "elements": [],
    }


def _swap_axes(chart):
    chart["x_label"], chart["y_label"] = chart["y_label"], chart["x_label"]
    chart["x_unit"], chart["y_unit"] = chart["y_unit"], chart["x_unit"]


def _converter(axis):
    get = getattr(axis, "get_converter", None)
    return get() if callable(get) else getattr(axis, "converter", None)


def _scale(axis, scale):
    import matplotlib.category
    import matplotlib.dates

    conv = _converter(axis)
    date_types = tuple(
        t
        for t in (
            getattr(matplotlib.dates, "DateConverter", None),
            getattr(matplotlib.dates, "ConciseDateConverter", None),
            getattr(matplotlib.dates, "_SwitchableDateConverter", None),
        )
        if t is not None
    )
    if conv is not None and date_types and isinstance(conv, date_types):
        return "datetime"
    if isinstance(conv, matplotlib.category.StrCategoryConverter):
        return "categorical"
    return scale


def _ticks(axis, scale):
    import matplotlib.dates

    ticks = list(axis.get_ticklocs())
    if scale == "datetime":
        return [matplotlib.dates.num2date(t).isoformat() for t in ticks]
    return [float(t) for t in ticks]


def _value(v, scale):
    import matplotlib.dates
    import numpy

    if isinstance(v, numpy.datetime64):
        return str(v.astype("datetime64[s]"))
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, str):
        return v
    if scale == "datetime":
        try:
            return matplotlib.dates.num2date(float(v)).isoformat()
        except (TypeError, ValueError, OverflowError):
            pass
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _point_chart(ax, kind):
    chart = _chart2d(ax, kind)
    x_scale = _scale(ax.xaxis, ax.get_xscale())
    y_scale = _scale(ax.yaxis, ax.get_yscale())
    chart.update(
        {
            "x_ticks": _ticks(ax.xaxis, x_scale),
            "x_tick_labels": [t.get_text() for t in ax.get_xticklabels()],
            "x_scale": x_scale,
            "y_ticks": _ticks(ax.yaxis, y_scale),
            "y_tick_labels": [t.get_text() for t in ax.get_yticklabels()],
            "y_scale": y_scale,
        }
    )
    return chart, x_scale, y_scale


def _label(artist, default):
    label = str(artist.get_label() or "")
    return default if not label or label.startswith("_") else label


def _line(ax):
    chart, xs, ys = _point_chart(ax, "line")
    for i, line in enumerate(ln for ln in ax.lines if not _is_grid_line(ln)):
        points = [[_value(x, xs), _value(y, ys)] for x, y in zip(line.get_xdata(), line.get_ydata())]
        chart["elements"].append({"label": _label(line, f"Line {i}"), "points": points})
    return chart


def _scatter(ax):
    chart, xs, ys = _point_chart(ax, "scatter")
    for i, coll in enumerate(ax.collections):
        points = [[_value(x, xs), _value(y, ys)] for x, y in coll.get_offsets()]
        chart["elements"].append({"label": _label(coll, f"Series {i}"), "points": points})
    return chart


def _tick_label_at(axis, position):
    """Text of the tick nearest to ``position`` on ``axis``."""
    locs = list(axis.get_ticklocs())
    labels = [t.get_text() for t in axis.get_ticklabels()]
    if not locs or len(locs) != len(labels):
        return None
    nearest = min(range(len(locs)), key=lambda i: abs(locs[i] - position))
    return labels[nearest]


def _bar(ax):
    from matplotlib.container import BarContainer

    chart = _chart2d(ax, "bar")
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    for gi, container in enumerate(containers):
        group = _label(container, f"Group {gi}")
        horizontal = getattr(container, "orientation", None) == "horizontal"
        for rect in container:
            if horizontal:
                center, value = rect.get_y() + rect.get_height() / 2, rect.get_width()
                label = _tick_label_at(ax.yaxis, center)
            else:
                center, value = rect.get_x() + rect.get_width() / 2, rect.get_height()
                label = _tick_label_at(ax.xaxis, center)
            chart["elements"].append({"label": label or f"{center:g}", "group": group, "value": float(value)})
        if horizontal and gi == 0:
            _swap_axes(chart)
    return chart


def _pie(ax):
    chart = {"type": "pie", "title": _title(ax), "elements": []}
    for i, wedge in enumerate(ax.patches):
        chart["elements"].append(
            {
                "label": _label(wedge, f"Slice {i}"),
                "angle": abs(round(wedge.theta2 - wedge.theta1, 4)),
                "radius": float(wedge.r),
            }
        )
    return chart


def _box(ax):
    chart = _chart2d(ax, "box_and_whisker")
    two_point = [ln for ln in ax.lines if len(ln.get_xdata()) == 2 and not _is_grid_line(ln)]
    # Whiskers run along the value axis: vertical lines in an upright box plot.
    vertical = any(ln.get_xdata()[0] == ln.get_xdata()[1] and ln.get_ydata()[0] != ln.get_ydata()[1] for ln in two_point)
    if not vertical:
        _swap_axes(chart)

    def along(ln):  # (position on the category axis, values on the value axis)
        xs, ys = list(map(float, ln.get_xdata())), list(map(float, ln.get_ydata()))
        return (xs, ys) if vertical else (ys, xs)

    for i, patch in enumerate(ax.patches):
        verts = patch.get_path().vertices
        pos, val = (verts[:, 0], verts[:, 1]) if vertical else (verts[:, 1], verts[:, 0])
        lo, hi = float(min(pos)), float(max(pos))
        q1, q3 = float(min(val)), float(max(val))
        box = {"first_quartile": q1, "third_quartile": q3, "median": None, "min": q1, "max": q3, "outliers": []}
        center = (lo + hi) / 2
        for ln in ax.lines:
            p, v = along(ln)
            if not p:
                continue
            if len(p) == 2 and lo <= min(p) and max(p) <= hi and v[0] == v[1] and q1 <= v[0] <= q3 and p[0] != p[1]:
                box["median"] = v[0]
            elif len(p) == 2 and p[0] == p[1] and abs(p[0] - center) < 1e-9:
                if max(v) <= q1:
                    box["min"] = min(v)
                elif min(v) >= q3:
                    box["max"] = max(v)
            elif ln.get_linestyle() in ("None", "none", "", " ") and all(abs(x - center) < 1e-9 for x in p):
                box["outliers"].extend(v)
        if box["median"] is None:
            box["median"] = (q1 + q3) / 2
        axis = ax.xaxis if vertical else ax.yaxis
        box["label"] = _tick_label_at(axis, center) or str(i + 1)
        chart["elements"].append(box)
    return chart
