"""IPython extension loaded into every Python kernel stasis-interpreter starts.

It makes the mime bundles E2B's code-interpreter SDKs read (see the crate's
src/output.rs for how bundles become ``result`` lines):

- ``e2b/chart``: matplotlib figures as chart objects (``charts.py``), next to the
  inline backend's ``image/png``;
- ``e2b/data``: pandas DataFrames as ``{column: [values]}``, next to their HTML;
- ``application/json``: dicts and lists as JSON.

Formatters find their classes in modules already imported, so loading the extension
imports neither pandas nor matplotlib: a context that never plots never pays for them. ``preload()``
imports them on purpose (the service runs it in its warm default context).

Loaded by ``stasis_startup.py`` (the service sets PYTHONSTARTUP to it).
"""

import math

from . import charts


def _json_safe(value):
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, keys to str."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _json_safe(item())
        except (TypeError, ValueError):
            pass
    try:
        if value != value:  # pandas.NaT and other NaN-likes
            return None
    except (TypeError, ValueError):
        pass
    isoformat = getattr(value, "isoformat", None)  # datetime, date, pandas.Timestamp
    if callable(isoformat):
        try:
            return isoformat()
        except (TypeError, ValueError):
            pass
    return str(value)


def dataframe_data(df):
    """``e2b/data`` of a DataFrame: ``{column: [values]}``."""
    return _json_safe(df.to_dict(orient="list"))


def figure_chart(fig):
    """``e2b/chart`` of a matplotlib Figure (``{}`` when it has nothing to say)."""
    try:
        return _json_safe(charts.figure_to_chart(fig))
    except Exception:  # a chart we cannot read must never hide the PNG
        return {}


def json_value(obj):
    """``application/json`` of a dict or list, when it is JSON at all."""
    try:
        return _json_safe(obj)
    except Exception:
        return None


def _formatter_class(mime, method, handlers):
    """A formatter for ``mime`` that handles instances of ``handlers``' classes.

    ``handlers`` maps ``(module, class name)`` to a function. The classes are looked up
    when an object is formatted, and only in modules already imported, so nothing is
    imported for them. Not ``for_type_by_name``: matplotlib's inline backend removes every
    formatter's printers for ``Figure`` when it is activated (IPython's
    ``select_figure_formats``), and pandas' DataFrame says it lives in ``pandas``.
    """
    import sys

    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class Formatter(BaseFormatter):
        format_type = Unicode(mime)
        print_method = ObjectName(method)
        _return_type = (dict, list, str)

        def __call__(self, obj):
            for (module, name), func in handlers.items():
                cls = getattr(sys.modules.get(module), name, None)
                if isinstance(cls, type) and isinstance(obj, cls):
                    return func(obj)
            return super().__call__(obj)

    Formatter.__name__ = "StasisFormatter_" + method.strip("_")
    return Formatter


def load_ipython_extension(ip):
    formatters = ip.display_formatter.formatters
    data = _formatter_class("e2b/data", "_repr_e2b_data_", {("pandas", "DataFrame"): dataframe_data})
    formatters["e2b/data"] = data(parent=ip.display_formatter)
    chart = _formatter_class("e2b/chart", "_repr_e2b_chart_", {("matplotlib.figure", "Figure"): figure_chart})
    formatters["e2b/chart"] = chart(parent=ip.display_formatter)

    as_json = formatters.get("application/json")
    if as_json is not None:
        as_json.for_type(dict, json_value)
        as_json.for_type(list, json_value)

    # Tracebacks without ANSI colours, as E2B's kernels (the SDKs show them as text).
    for scheme in ("nocolor", "NoColor"):
        try:
            ip.run_line_magic("colors", scheme)
            break
        except Exception:
            continue


def preload():
    """Import the scientific stack (if installed) without touching the user's namespace."""
    import importlib

    for name in ("numpy", "pandas", "matplotlib", "matplotlib.pyplot"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
