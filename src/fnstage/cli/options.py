"""Options and arguments shared by several commands, declared once so their help reads the same."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Environment(StrEnum):
    dev = "dev"
    staging = "staging"
    prod = "prod"


GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        "-g",
        metavar="ID",
        help="Gateway to act on. (default: $FNSTAGE_GATEWAY)",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
SemverOption = Annotated[
    str | None,
    typer.Option(
        "--semver", metavar="X.Y.Z", help="Semver of the new version; must be greater than the target's."
    ),
]
CanaryOption = Annotated[
    str | None,
    typer.Option(
        "--canary",
        metavar="PCT[,PCT...]",
        help="Canary release: serve the new version to this share of requests first (10%, or steps 10,50).",
    ),
]
BakeOption = Annotated[
    str | None,
    typer.Option(
        "--bake", metavar="DURATION", help="With --canary: time per step, such as 30s or 10m (default 10m)."
    ),
]
MaxErrorRateOption = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        metavar="POINTS",
        help="With --canary: roll back when its error rate is this many points above stable's (default 5).",
    ),
]
MaxP95RatioOption = Annotated[
    float | None,
    typer.Option(
        "--max-p95-ratio",
        metavar="X",
        help="With --canary: roll back when its p95 latency is X times stable's (default 1.5).",
    ),
]
MinRequestsOption = Annotated[
    int | None,
    typer.Option(
        "--min-requests",
        metavar="N",
        help="With --canary: requests on each side before judging (default 50).",
    ),
]
NoteOption = Annotated[
    str | None,
    typer.Option("--note", "-m", metavar="TEXT", help="Release note, recorded in history (required)."),
]


ForceReleaseOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Release even a version that failed to load on its runtimes (history records it).",
    ),
]


LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="FNSTAGE_LOG_FORMAT",
        metavar="FORMAT",
        help="The runtime's event lines (start, feed, loads, failures, cells, stop), each with a UTC "
        "timestamp: text, or json (one object per line).",
    ),
]
