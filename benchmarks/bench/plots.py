"""The bench report's figures (matplotlib, Agg: no display needed, no GUI toolkit imported).

quality_latency.png  ROUGE-Lsum (95% CI) against median latency per document, one point a system
latency.png          per-document latency distribution of each system
memory.png           peak RSS of each local bundle's process, beside its size on disk
overview.png         the three side by side: the picture to paste into a chat or a README
"""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024
_COLORS = {"local": "#1f77b4", "cloud-live": "#d62728", "cloud-file": "#ff7f0e"}
_KIND_LABELS = {"local": "local bundle", "cloud-live": "cloud (live API)", "cloud-file": "cloud (outputs file)"}


def _log_if_spread(ax, values) -> None:
    """A log axis when systems differ by orders of magnitude, so the fast ones stay visible."""
    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps ("0.5", "20", "200"), not 2×10^1, no crowded minor labels.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def write_plots(systems, out: Path, title: str = "") -> dict[str, Path]:
    """Write the PNGs; {} (and the report says why) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    files = {}
    for name, draw, size in (("quality_latency", quality_vs_latency, (6.4, 4.4)),
                             ("latency", latency_distribution, (6.4, 4.0)),
                             ("memory", memory, (6.4, 3.6))):
        fig, ax = plt.subplots(figsize=size, dpi=110)
        draw(ax, systems)
        fig.tight_layout()
        files[name] = out / f"{name}.png"
        fig.savefig(files[name])
        plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=80)
    for ax, draw in zip(axes, (quality_vs_latency, latency_distribution, memory)):
        draw(ax, systems)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    files["overview"] = out / "overview.png"
    fig.savefig(files["overview"])
    plt.close(fig)
    return files


def quality_vs_latency(ax, systems) -> None:
    missing = []
    for s in systems:
        m = s.metrics
        q = m.get("rougeLsum")
        if m.get("latency_p50_s") is None or not q or not q.get("n"):
            missing.append(s.name)
            continue
        x, p95 = m["latency_p50_s"], m["latency_p95_s"]
        y = q["mean"] * 100
        ax.errorbar([x], [y], yerr=[[y - q["low"] * 100], [q["high"] * 100 - y]],
                    xerr=[[0], [max(0.0, p95 - x)]], fmt="o", capsize=4, markersize=7,
                    color=_COLORS.get(s.kind, "gray"), ecolor=_COLORS.get(s.kind, "gray"))
        ax.annotate(s.name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    _log_if_spread(ax, [s.metrics["latency_p50_s"] for s in systems if s.metrics.get("latency_p50_s")])
    kinds = {s.kind for s in systems}
    handles = [ax.scatter([], [], color=color, label=_KIND_LABELS[kind])
               for kind, color in _COLORS.items() if kind in kinds]
    if len(handles) > 1:
        ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("latency per document, s (dot: median; bar: to p95)")
    ax.set_ylabel("ROUGE-Lsum F1 × 100 (95% CI)")
    title = "Quality vs latency (up and left is better)"
    if missing:
        title += f"\nnot plotted (no latency): {', '.join(missing)}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


def latency_distribution(ax, systems) -> None:
    timed = [s for s in systems if any(d.latency_s is not None for d in s.docs)]
    if not timed:
        ax.text(0.5, 0.5, "no per-document latencies", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    data = [[d.latency_s for d in s.docs if d.latency_s is not None] for s in timed]
    try:
        ax.boxplot(data, orientation="horizontal", showfliers=False)
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(data, vert=False, showfliers=False)
    for i, (s, values) in enumerate(zip(timed, data), start=1):
        jitter = [i + ((k * 37) % 11 - 5) / 40 for k in range(len(values))]  # fixed, not random
        ax.scatter(values, jitter, s=10, alpha=0.6, color=_COLORS.get(s.kind, "gray"), zorder=3)
    _log_if_spread(ax, [v for values in data for v in values])
    ax.set_yticks(range(1, len(timed) + 1), [s.name for s in timed], fontsize=8)
    ax.set_xlabel("latency per document, s")
    ax.set_title("Latency distribution", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def memory(ax, systems) -> None:
    local = [s for s in systems if s.kind == "local" and s.metrics.get("peak_rss_bytes")]
    if not local:
        ax.text(0.5, 0.5, "no local bundles", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ys = range(len(local))
    rss = [s.metrics["peak_rss_bytes"] / MIB for s in local]
    size = [(s.metrics.get("size_bytes") or 0) / MIB for s in local]
    ax.barh([y + 0.2 for y in ys], rss, height=0.4, label="peak RSS of its process", color="#1f77b4")
    ax.barh([y - 0.2 for y in ys], size, height=0.4, label="bundle on disk", color="#9ecae1")
    for y, value in zip(ys, rss):
        ax.annotate(f"{value:,.0f} MiB", (value, y + 0.2), textcoords="offset points", xytext=(3, -3),
                    fontsize=8)
    ax.set_yticks(list(ys), [s.name for s in local], fontsize=8)
    ax.set_xlabel("MiB")
    ax.set_xlim(0, max(rss + size) * 1.25)
    ax.set_title("Memory (lower is better)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
