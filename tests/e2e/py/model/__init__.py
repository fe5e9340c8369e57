"""Model-based randomized test of Stasis through the official PyPI `e2b` SDK (issue 12).

A seed generates a sequence of real SDK operations (create / kill, files as `user` and
`root`, watches, commands, a background process holding a secret in memory, pause /
connect / set_timeout / list, snapshots, forks, daemon SIGTERM / SIGKILL + restart).
The sequence is generated up front against an abstract model (`ops.World`), so a seed
always names the same sequence; the runner (`runner.Runner`) then executes it against a
server it owns (`server.Server`) and checks every result against the model. On a
mismatch or an unexpected exception it prints the operation log and shrinks the
sequence (`shrink.shrink`) to a short replayable list.

  python -m model --seed 7 --ops 200          # one seed (cwd: tests/e2e/py)
  python -m model --replay failing.json       # a printed (shrunk) sequence
  python -m model --soak 30m                  # fresh seeds until the time is up
  pytest test_model.py                        # 3 fixed seeds, bounded (run.sh runs it)
"""
