"""``python -m modelreg``: the same as the ``modelreg`` command."""

from modelreg.cli import main

main()
