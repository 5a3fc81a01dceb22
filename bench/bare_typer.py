"""The W1 floor: a bare Typer app with one command, run in modelreg's own environment.

It costs what any Typer CLI costs before doing anything: the interpreter, `import typer` and
one parse. `modelreg show` is measured against it.
"""

import typer

app = typer.Typer()


@app.command()
def show(ref: str) -> None:
    print(ref)


if __name__ == "__main__":
    app()
