"""`python -m tollgate`: the `tollgate` command."""

from tollgate.cli import main

main()
