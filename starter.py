"""The CLI for order systems and ops: `python starter.py --help` (installed as `csp`).

The commands live in the `cli` package, one module per capability; this is the entry point the
`csp` script, the Makefile and the README name.

Input is validated before anything starts; exit codes: 0 ok (also: an order already processed,
answered from the registry), 2 invalid input, 3 refused, 4 not found, 5 Temporal unreachable.
"""

from __future__ import annotations

import sys

from cli import app

__all__ = ["app"]

if __name__ == "__main__":
    app(prog_name="csp")
    sys.exit(0)
