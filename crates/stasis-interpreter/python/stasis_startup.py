"""Start-up file of the Python kernels stasis-interpreter launches (PYTHONSTARTUP).

Loads the ``stasis_kernel`` IPython extension from the directory beside this file,
without adding that directory to ``sys.path`` (the user's imports stay theirs). Any
other Python started with this environment (``!python3`` in a cell) has no IPython
shell: then it does nothing.
"""


def _stasis_load():
    import importlib.util
    import os
    import sys

    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or "stasis_kernel" in sys.modules:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "stasis_kernel", os.path.join(here, "stasis_kernel", "__init__.py"),
        submodule_search_locations=[os.path.join(here, "stasis_kernel")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["stasis_kernel"] = module
    spec.loader.exec_module(module)
    module.load_ipython_extension(ip)


try:
    _stasis_load()
finally:
    del _stasis_load
