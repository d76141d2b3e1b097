"""``python -m groklab.cli``: the ``groklab`` command."""

from groklab.cli import entry

entry()
