"""The chart of the concurrency sweep: throughput and p99 of the stack against nginx's static 308."""

from pathlib import Path


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    connections = [point["stack"]["connections"] for point in results["sweep"]]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4))
    backends = (
        "app → SQLite"
        if results.get("stack", "prod") == "prod"
        else f"{results['replicas']} app replicas → PostgreSQL, Redis"
    )
    for key, label in (("baseline", "nginx static 308"), ("stack", f"stack redirect (nginx → {backends})")):
        throughput.plot(connections, [p[key]["rps"] for p in results["sweep"]], marker="o", label=label)
        latency.plot(connections, [p[key]["p99_ms"] for p in results["sweep"]], marker="o", label=label)
    for axis, title, unit in ((throughput, "Throughput", "requests/s"), (latency, "p99 latency", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(connections, [str(c) for c in connections])
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
