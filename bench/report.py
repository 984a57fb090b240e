"""docs/benchmarks.md from a run's results: the table, the figures against the goals, the profiles."""


def table(results: dict) -> str:
    baseline = results["baseline_rps"]
    lines = [
        "| step | connections | requests/s | p50 ms | p99 ms | ratio to nginx static 308 | non-3xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['name']} | {run['connections']} | {run['rps']:,.0f} | {run['p50_ms']:.2f} | "
            f"{run['p99_ms']:.2f} | {run['rps'] / baseline:.1%} | "
            f"{run['non_3xx_or_2xx'] + run['socket_errors']} |"
        )
    return "\n".join(lines)


def report(results: dict, chart_name: str, command: str) -> str:
    clicks = results["clicks"]
    memory = results.get("memory_mib_under_load")
    million = results.get("million")
    lines = [
        "# Benchmarks",
        "",
        f"Latest run: {results['started']} on {results['machine']}; wrk on the same cores as the stack.",
        f"Command: `{command}`. Stack: {results['workers']} uvicorn worker(s), fast path "
        f"{'on' if results['fast_path'] else 'off'}, {results['links']} links seeded through the API.",
        "",
        table(results),
        "",
        f"- **Redirect throughput: {results['redirect_ratio']:.1%} of nginx's static 308** measured in the "
        f"same run (target ≥ 25 %); with the Zipf (s = {results['zipf_s']}) mix over the same links "
        f"{results['zipf_ratio']:.1%}.",
        f"- Creation (POST / with an API key, 16 connections): {results['create_rps']:,.0f} links/s, beside "
        f"{results['redirect_rps']:,.0f} redirects/s.",
        f"- Clicks: {clicks['clicks_stored']:,} stored for {clicks['requests_completed']:,} redirects "
        "completed "
        f"(difference {clicks['difference']:+d}, at most {clicks['in_flight_bound']} allowed: requests in "
        "flight when wrk stopped counting, answered and counted by the server).",
        f"- Memory of the whole stack (nginx + app) under the redirect load: "
        f"{memory:.0f} MiB (target ≤ 300 MiB)."
        if memory
        else "- Memory: not measured.",
    ]
    if million:
        lines.append(
            f"- With {million['links']:,} links: uniform {million['rps']:,.0f} requests/s, "
            f"{million['ratio_to_1k']:.1%} of the 1,000-link figure (target ≥ 80 %, p99 "
            f"{million['p99_ms']:.1f} ms, target ≤ 25 ms); Zipf (s = {results['zipf_s']}) "
            f"{million['zipf_rps']:,.0f} requests/s, {million['zipf_ratio_to_1k']:.1%} (target ≥ 95 %); "
            f"creation {million['create_rps']:,.0f} links/s. Stack memory "
            f"afterwards {million['memory_mib_after']:.0f} MiB by `docker stats`, of which "
            f"{million['process_memory_mib_after']:.0f} MiB the processes' own (the rest is the page cache "
            f"of the database file, which the kernel gives back under pressure); seeding took "
            f"{results['million_seed_seconds']} s."
        )
    lines += [
        "",
        f"![Throughput and p99 against concurrency]({chart_name})",
        "",
        "What each optimisation was worth, what was tried and dropped, and what bounds the "
        "1,000,000-link case: [performance.md](performance.md).",
        "",
    ]
    for key, title in (
        ("profile_1k", "1,000 links"),
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
