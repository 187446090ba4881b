"""The ``slimkit`` command: parse arguments, build library objects, call the library, print.

Every error slimkit raises on purpose is printed as one paragraph with exit status 2. Each
command is a function in a module of this package; they are registered here, in help order.
"""

from __future__ import annotations

import sys

from slimkit._console import quiet_libraries
from slimkit.cli import _export, _list, _measure, _run
from slimkit.cli._common import app, errors

# The commands, in the order `slimkit --help` lists them.
app.command("run")(_run.run_cmd)
app.command("demo")(_run.demo)
app.command("eval")(_measure.eval_cmd)
app.command("bench")(_measure.bench)
app.command("export")(_export.export)
app.command("sensitivity")(_measure.sensitivity)
app.command("auto")(_run.auto)
app.command("report")(_run.report)
app.command("list")(_list.list_cmd)


def main() -> None:
    """Console entry point: library errors become one paragraph and exit status 2."""
    quiet_libraries()
    from slimkit.errors import RunInterrupted, SlimkitError

    try:
        app()
    except RunInterrupted as err:
        errors.print(f"[bold yellow]{err}[/]", highlight=False, soft_wrap=True)
        sys.exit(130)
    except SlimkitError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("[bold yellow]Interrupted.[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
