"""`conveyor monitor`: a live terminal view of the server's host and every live worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from conveyor.api.schemas import MetricPoint, MonitorOut
from conveyor.cli.output import console
from conveyor.cli.remote import connect, print_json, remote_command
from conveyor.core.types import JSON

SPARKS = "▁▂▃▄▅▆▇█"
TREND_POINTS = 12


@click.command("monitor")
@click.option(
    "-n",
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Print one view and exit (for scripts and logs).")
@remote_command
def monitor_command(
    interval_s: float, once: bool, server: str, token: str | None, as_json: bool
) -> None:
    """CPU, memory, disk, network and GPUs of the server's host and of each live worker.

    Refreshes every --interval seconds until Ctrl-C; --once prints a single view, --json one
    JSON snapshot (with the history the server keeps).
    """
    with connect(server, token) as client:
        if as_json:
            print_json(client.monitor())
            return
        out = console()
        if once:
            out.print(render(client.monitor(), server, live=False))
            return
        with Live(render(client.monitor(), server), console=out, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval_s)
                    live.update(render(client.monitor(), server), refresh=True)
            except KeyboardInterrupt:
                pass


def render(
    monitor: MonitorOut, server_url: str, now: datetime | None = None, *, live: bool = True
) -> Group:
    now = now or datetime.now(UTC)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, expand=False)
    for column in ("machine", "CPU", "RAM", "disk", "disk r/w", "net in/out", "GPU"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=22)
    server_name = f"server {monitor.server.get('host') or ''}".strip()
    table.add_row(*_row(server_name, "serving", monitor.server, monitor.server_history))
    for worker in monitor.workers:
        metrics = worker.get("metrics")
        seen = worker.get("last_seen_at")
        state = str(worker.get("state"))
        if isinstance(seen, str):
            age_s = (now - datetime.fromisoformat(seen)).total_seconds()
            state += f" {max(0.0, age_s):.0f}s"
        history = monitor.worker_history.get(str(worker.get("id")), [])
        table.add_row(
            *_row(
                str(worker.get("name")),
                state,
                metrics if isinstance(metrics, dict) else {},
                history,
            )
        )
    title = Text(f"Conveyor at {server_url} · {len(monitor.workers)} live worker(s)", "bold")
    footer = Text(f"{now.astimezone():%H:%M:%S}" + ("  ·  Ctrl-C to quit" if live else ""), "dim")
    return Group(title, table, footer)


def _row(name: str, state: str, m: dict[str, JSON], history: list[MetricPoint]) -> tuple[Text, ...]:
    """Two lines per machine: the figures, then details (trend, sizes, load)."""
    trend = sparkline([p.cpu_percent for p in history][-TREND_POINTS:])
    return (
        Text.assemble((name, "bold"), "\n", (state, "dim")),
        Text.assemble(_percent(m.get("cpu_percent")), "\n", (trend or _load(m), "cyan")),
        Text.assemble(
            _percent(m.get("memory_percent")),
            "\n",
            (_sizes(m.get("memory_used_bytes"), m.get("memory_total_bytes")), "dim"),
        ),
        Text.assemble(
            _percent(m.get("disk_percent")),
            "\n",
            (_sizes(m.get("disk_used_bytes"), m.get("disk_total_bytes")), "dim"),
        ),
        Text(f"{_rate(m.get('disk_read_bytes_per_s'))}\n{_rate(m.get('disk_write_bytes_per_s'))}"),
        Text(f"{_rate(m.get('net_recv_bytes_per_s'))}\n{_rate(m.get('net_sent_bytes_per_s'))}"),
        Text(_gpus(m.get("gpus"))),
    )


def sparkline(values: list[float | None], top: float = 100.0) -> str:
    """One character per value, from ▁ (0) to █ (`top`); a gap for a missing value."""
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        else:
            level = round(max(0.0, min(value, top)) / top * (len(SPARKS) - 1))
            out.append(SPARKS[level])
    return "".join(out)


def _percent(value: JSON) -> Text:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return Text("—", "dim")
    style = "red" if value >= 90 else "yellow" if value >= 70 else "green"
    return Text(f"{value:.1f}%", style)


def _sizes(used: JSON, total: JSON) -> str:
    if not isinstance(used, int | float) or not isinstance(total, int | float):
        return ""
    return f"{human_bytes(used)}/{human_bytes(total)}"


def _rate(value: JSON) -> str:
    return f"{human_bytes(value)}/s" if isinstance(value, int | float) else "—"


def _load(m: dict[str, JSON]) -> str:
    value = m.get("load_avg")
    if isinstance(value, list) and value and isinstance(value[0], int | float):
        return f"load {value[0]:.2f}"
    return ""


def _gpus(value: JSON) -> str:
    if not isinstance(value, list) or not value:
        return "none"
    parts = []
    for gpu in value:
        if isinstance(gpu, dict):
            use = gpu.get("utilization_percent")
            used, total = gpu.get("memory_used_bytes"), gpu.get("memory_total_bytes")
            memory = (
                f" {human_bytes(used)}/{human_bytes(total)}"
                if isinstance(used, int | float) and isinstance(total, int | float)
                else ""
            )
            parts.append(f"#{gpu.get('index')} {use if use is not None else '?'}%{memory}")
    return "\n".join(parts) or "none"


def human_bytes(value: float) -> str:
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" or size >= 100 else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}P"  # pragma: no cover - the loop returns at T
