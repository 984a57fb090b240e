"""docs/benchmarks.md (the single box) and docs/benchmarks-scale.md (the scale stack)
from their runs' JSON: the table, the figures against the goals, the profiles, and
both stacks side by side when both have been run."""

import json
from pathlib import Path

from bench.wrk import log

# Each stack's files in the output folder: <name>.json, <name>.md, <name>.png.
REPORT_NAMES = {"prod": "benchmarks", "scale": "benchmarks-scale"}
TITLES = {"prod": "single box", "scale": "scale stack"}


def table(results: dict) -> str:
    baseline = results["baseline_rps"]
    lines = [
        "| step | connections | requests/s | p50 ms | p99 ms | ratio to nginx static 308 | non-3xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["runs"]:
        # A step measured in rounds: its median share of the baseline in the same round.
        share = run.get("share_of_baseline")
        lines.append(
            f"| {run['name']} | {run['connections']} | {run['rps']:,.0f} | {run['p50_ms']:.2f} | "
            f"{run['p99_ms']:.2f} | {run['rps'] / baseline if share is None else share:.1%} | "
            f"{run['non_3xx_or_2xx'] + run['socket_errors']} |"
        )
    return "\n".join(lines)


def rounds_note(results: dict) -> list[str]:
    """How the rows measured in rounds were found: each round's requests/s."""
    measured = [run for run in results["runs"] if len(run.get("rounds_rps", [])) > 1]
    if not measured:
        return []
    each = "; ".join(
        f"{run['name']} {' · '.join(f'{rps:,.0f}' for rps in run['rounds_rps'])}" for run in measured
    )
    return [
        f"- The baseline and redirect rows are each the median of {results['rounds']} rounds, the steps "
        f"run in turn, each round's figures kept together (requests/s by round: {each}). Their ratios to "
        "nginx's static 308 are the medians of each round's ratio to nginx in that round."
    ]


def settle_note(results: dict) -> list[str]:
    """How long each redirect step's mix ran before it was measured (runs
    made before it was settled have no such figure)."""
    if not results.get("settle_seconds"):
        return []
    return [
        f"- Each redirect step was measured after {results['settle_seconds']:g} s of the same mix, "
        "unmeasured, and each nginx run after at least as long a rest: a step pays for the writes its "
        "own clicks cause (on SQLite, the journal's roll-ups), not for the step's before it."
    ]


def round_ratios(million: dict) -> str:
    """The large phase against the first other than as the median rounds'
    requests/s: since 2026-12-02 the two stacks' steps share their rounds, and
    each round's requests/s are set against the first stack's in that round;
    before, each phase had rounds of its own, and each was taken as its share
    of nginx's 308 in its rounds (runs made before rounds have neither)."""
    if "round_ratio_to_1k" in million:
        return (
            f" (the median of each round's requests/s against the first stack's in that round: uniform "
            f"{million['round_ratio_to_1k']:.1%}, Zipf {million['zipf_round_ratio_to_1k']:.1%})"
        )
    if "share_ratio_to_1k" in million:
        # (A few runs of the day the steps first shared rounds recorded shares only.)
        rounds = "the same rounds" if million.get("same_rounds") else "each phase's rounds, minutes apart"
        return (
            f" (as shares of nginx's static 308 in {rounds}: uniform "
            f"{million['share_ratio_to_1k']:.1%}, Zipf {million['zipf_share_ratio_to_1k']:.1%})"
        )
    return ""


def under_load(million: dict) -> str:
    """The large stack's memory under its redirect load (runs made before it was sampled have none)."""
    if not million.get("memory_mib_under_load"):
        return ""
    return f"under its redirect load {million['memory_mib_under_load']:.0f} MiB, "


def large_stack(million: dict) -> str:
    """Which stack the large phase's figures are of: a second one since 2026-12-02, the first before."""
    return "The large stack's" if million.get("same_rounds") else "Stack"


def setup(results: dict) -> str:
    """What was measured, in a few words."""
    if results.get("stack", "prod") == "prod":
        return f"one app container, {results['workers']} uvicorn worker(s), SQLite"
    return (
        f"{results['replicas']} app replicas, {results['workers']} uvicorn worker(s) each, PostgreSQL + Redis"
    )


def containers(results: dict) -> str:
    """The running containers the memory figures add up, by compose service ("3 app, nginx")."""
    services = results["memory_services"]
    return ", ".join(
        f"{services.count(name)} {name}" if services.count(name) > 1 else name
        for name in sorted(set(services))
    )


def stack_run(results: dict, name: str) -> dict | None:
    return next((run for run in results["runs"] if run["name"] == name), None)


def side_by_side(single: dict | None, scale: dict | None) -> str:
    """The two stacks' headline figures, each from its latest run ("—": not in that run)."""
    columns = [single, scale]

    def row(label: str, figure) -> str:
        cells = []
        for results in columns:
            try:
                cells.append(figure(results) if results else "—")
            except (KeyError, TypeError):
                cells.append("—")  # a run made before this figure was recorded
        return f"| {label} | {' | '.join(cells)} |"

    def clicks(results: dict) -> str:
        clicks = results["clicks"]
        verdict = "yes" if clicks["exact"] else "**no**"
        return f"{verdict} ({clicks['difference']:+d}, in flight ≤ {clicks['in_flight_bound']})"

    def million(results: dict) -> str:
        big = results["million"]
        return (
            f"{big['links']:,} links: {big['ratio_to_1k']:.1%} of {results['links']:,} links' "
            f"throughput, p99 {big['p99_ms']:.1f} ms"
        )

    lines = [
        "| | single box | scale stack |",
        "| --- | --- | --- |",
        row("setup", setup),
        row("run", lambda r: f"{r['started']} (`{r['command']}`)"),
        row("redirect, ratio to nginx static 308", lambda r: f"{r['redirect_ratio']:.1%}"),
        row(
            "redirect p50 / p99 (64 connections)",
            lambda r: "{p50_ms:.2f} / {p99_ms:.2f} ms".format(**stack_run(r, "stack redirect")),
        ),
        row("Zipf mix, ratio to nginx static 308", lambda r: f"{r['zipf_ratio']:.1%}"),
        row("creation (POST /, 16 connections)", lambda r: f"{r['create_rps']:,.0f} links/s"),
        row("clicks stored = redirects completed", clicks),
        row("memory under load, every container", lambda r: f"{r['memory_mib_under_load']:.0f} MiB"),
        row("the large phase (`--million`), uniform", million),
    ]
    return "\n".join(lines)


def machine_note(results: dict) -> str:
    """What else the machine was doing while wrk measured: its busy share with
    the stack(s) idle and the processes of its own stopped then (bench/machine.py)."""
    stacks = "both stacks" if (results.get("million") or {}).get("same_rounds") else "the stack"
    if "busy_share_stack_idle" not in results:
        return f"The machine's load with {stacks} idle was not measured in this run."
    paused = results.get("paused_while_measuring") or []
    stopped = (
        " and these processes stopped, as they were while wrk measured: "
        + "; ".join(f"`{command}`" for command in paused)
        if paused
        else " (no process of the machine's own stopped while wrk measured)"
    )
    return f"The machine was {results['busy_share_stack_idle']:.1%} busy with {stacks} idle{stopped}."


def report(results: dict, chart_name: str, *, other: dict | None = None) -> str:
    """One stack's page; `other` is the other stack's latest results (the side-by-side table)."""
    clicks = results["clicks"]
    memory = results.get("memory_mib_under_load")
    million = results.get("million")
    prod = results.get("stack", "prod") == "prod"
    # Issue 15's goals are the single box's; the scale stack's figures show what the shared backends cost.
    target = (lambda goal: f" (target {goal})") if prod else (lambda goal: "")
    lines = [
        "# Benchmarks" if prod else "# Benchmarks: the scale stack",
        "",
        f"Latest run: {results['started']} on {results['machine']}; wrk on the same cores as the stack.",
        f"Command: `{results['command']}`. Stack: `{' + '.join(results['compose_files'])}`, "
        f"{setup(results)}, fast path {'on' if results['fast_path'] else 'off'}, {results['links']} links "
        "seeded through the API.",
        machine_note(results),
        "",
        table(results),
        "",
        *rounds_note(results),
        *settle_note(results),
        f"- **Redirect throughput: {results['redirect_ratio']:.1%} of nginx's static 308** measured in the "
        f"same run{target('≥ 25 %')}; with the Zipf (s = {results['zipf_s']}) mix over the same links "
        f"{results['zipf_ratio']:.1%}.",
        f"- Creation (POST / with an API key, 16 connections): {results['create_rps']:,.0f} links/s, beside "
        f"{results['redirect_rps']:,.0f} redirects/s.",
        f"- Clicks: {clicks['clicks_stored']:,} stored for {clicks['requests_completed']:,} redirects "
        "completed "
        f"(difference {clicks['difference']:+d}, at most {clicks['in_flight_bound']} allowed: requests in "
        "flight when wrk stopped counting, answered and counted by the server).",
        f"- Memory of the whole stack ({containers(results)}) under the redirect load: "
        f"{memory:.0f} MiB{target('≤ 300 MiB')}."
        if memory
        else "- Memory: not measured.",
    ]
    for errors, stack in (
        (results.get("error_answers"), ""),
        ((million or {}).get("error_answers"), " (large)"),
    ):
        if errors:
            lines.append(
                f"- **Failed requests{stack}** (the table's last column): nginx answered "
                f"{errors['nginx_statuses']} by status (499s, requests in flight when wrk stopped, left "
                f"out); the app's last error lines are in the JSON ({len(errors['app_errors'])})."
            )
    if million:
        # SQLite's stack: the redirect table built after the seeding (bench/run.py).
        table_build = results.get("million_table")
        table_files = " and the redirect table" if table_build else ""
        table_built = f", then {table_build}" if table_build else ""
        lines.append(
            f"- With {million['links']:,} links: uniform {million['rps']:,.0f} requests/s, "
            f"{million['ratio_to_1k']:.1%} of the {results['links']:,}-link figure{target('≥ 80 %')}, p99 "
            f"{million['p99_ms']:.1f} ms{target('≤ 25 ms')}; Zipf (s = {results['zipf_s']}) "
            f"{million['zipf_rps']:,.0f} requests/s, {million['zipf_ratio_to_1k']:.1%}{target('≥ 95 %')}"
            f"{round_ratios(million)}; creation {million['create_rps']:,.0f} links/s. "
            f"{large_stack(million)} memory {under_load(million)}afterwards "
            f"{million['memory_mib_after']:.0f} MiB by `docker stats`, of which "
            f"{million['process_memory_mib_after']:.0f} MiB the processes' own (the rest is the page cache "
            f"of the database's files{table_files}, which the kernel gives back under pressure); "
            f"seeding took {results['million_seed_seconds']} s{table_built}."
        )
    single, scale = (results, other) if prod else (other, results)
    lines += [
        "",
        f"![Throughput and p99 against concurrency]({chart_name})",
        "",
        "## Single box against the scale stack",
        "",
        f"The latest run of each ([{REPORT_NAMES['prod']}.md]({REPORT_NAMES['prod']}.md): "
        f"`docker-compose.prod.yml`; [{REPORT_NAMES['scale']}.md]({REPORT_NAMES['scale']}.md): "
        "`docker-compose.scale.yml`), each against nginx's static 308 in its own run. On one 2-core "
        "machine the replicas share the cores with PostgreSQL and Redis: the scale stack's figures show "
        "what the shared backends cost, not what more hosts would add ([scaling.md](scaling.md)).",
        "",
        side_by_side(single, scale),
        "",
        "What each optimisation was worth, what was tried and dropped, and what bounds the "
        "1,000,000-link case: [performance.md](performance.md).",
        "",
    ]
    for key, title in (
        ("profile_1k", f"{results['links']:,} links"),
        ("profile_1m", f"{million['links']:,} links" if million else ""),
    ):
        if results.get(key):
            lines += [
                f"### Where one app worker's time goes: redirects over {title}",
                "",
                "py-spy samples of one uvicorn worker during the 64-connection run: self time, idle "
                "waits left out; `Runner.run` is time inside uvloop's C code (polling and socket I/O).",
                "",
                "| function | share of samples |",
                "| --- | ---: |",
            ]
            lines += [f"| `{name}` | {share:.1%} |" for name, share in results[key]]
            lines.append("")
    return "\n".join(lines)


def write_reports(folder: Path) -> None:
    """Each stack's page from its JSON in `folder`, each with the other's figures beside its own."""
    found = {}
    for stack, name in REPORT_NAMES.items():
        path = folder / f"{name}.json"
        if path.exists():
            found[stack] = json.loads(path.read_text())
    for stack, results in found.items():
        name = REPORT_NAMES[stack]
        if "command" not in results:
            log(f"{folder / name}.json predates this report (no command recorded): {name}.md left as it is")
            continue
        other = next((theirs for kind, theirs in found.items() if kind != stack), None)
        (folder / f"{name}.md").write_text(report(results, f"{name}.png", other=other))
