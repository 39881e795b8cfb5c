#!/usr/bin/env python3
"""The four comparisons of `scripts/bench.sh --summary`: which criterion benches they read, and
the table of figure, baseline(s), ratio or difference, aim.

    summary.py filter BENCH            the criterion filter (a regex) for one bench target
    summary.py table --since T DIR...  the table, from criterion's results under DIR
                                       (`*/new/benchmark.json` + `estimates.json`, mean)

A result written before T (seconds since the epoch) is from an earlier run and counts as not
measured, as does an id that no bench has.
"""

import json
import sys
from pathlib import Path

# The first iteration of the pipeline bench's baseline, which the bench writes beside criterion's
# results (criterion keeps no single iteration): the fresh figure the aim is about.
FRESH_WORKTREE = "pipeline/baseline, first iteration"
# Appended to an id: criterion's slope (linear sampling over 1..N tasks per sample) rather than
# its mean, i.e. the cost of one more task.
SLOPE = "#slope"
ITERATIONS_FILE = "pipeline-baseline-iterations.json"

# One row per path: the figure, its baselines (the first is the one the aim is about), the aim.
# An aim is ("ratio", r): figure <= r x first baseline; ("added", ns): figure - first baseline
# <= ns; ("abs", ns): figure <= ns. `aim_text` says a ratio's aim in words.
PATHS = [
    {
        "path": "host overhead per task",
        "bench": "pipeline",
        "figure": ("pipeline/one task, host overhead (2000-file repo)", "gaffer, one task"),
        "baselines": [
            (
                FRESH_WORKTREE,
                "git worktree add + remove, fresh repo, first iteration",
            ),
            (
                "pipeline/baseline: git worktree add + remove (fresh 2000-file repo)",
                "the same, 10 more after gaffer's runs (mean; each slows the next)",
            ),
        ],
        "aim": ("ratio", 0.5),
        "aim_text": "≤ 0.5 × fresh git worktree",
    },
    {
        "path": "per task in a run of many",
        "bench": "pipeline",
        "figure": (
            "pipeline/per task in a run of many, one worker (2000-file repo)" + SLOPE,
            "gaffer, one more task (slope)",
        ),
        "baselines": [
            (
                FRESH_WORKTREE,
                "git worktree add + remove, fresh repo, first iteration",
            ),
        ],
        "aim": ("ratio", 0.5),
        "aim_text": "≤ 0.5 × fresh git worktree",
    },
    {
        "path": "hook bridge (process per event)",
        "bench": "claude_code",
        "figure": (
            "claude-code hook, one process per event/"
            "gaffer-hook claude-code (Rust protected-paths, cached)",
            "gaffer-hook (linked statically, as shipped), Rust hook",
        ),
        "baselines": [
            (
                "claude-code hook, one process per event/baseline: sh -c 'exec /bin/true'",
                "exec floor: sh -c 'exec /bin/true'",
            ),
            (
                "claude-code hook, one process per event/"
                "gaffer-hook claude-code (Rust protected-paths, cached), linked dynamically",
                "the same gaffer-hook linked dynamically",
            ),
            (
                "claude-code hook, one process per event/"
                "baseline: python3 command hook, same rule",
                "python3 command hook",
            ),
        ],
        "aim": ("ratio", 1.5),
        "aim_text": "≤ 1.5 × exec floor",
    },
    {
        "path": "plugin call (cost-tier route)",
        "bench": "plugin_runtime",
        "figure": ("route/fresh-sandbox/pooling", "fresh sandbox, pooling"),
        "baselines": [
            ("route/native-floor", "native Rust call"),
            ("route-extism/fresh-plugin", "Extism, fresh plugin"),
            ("route-extism/reused-plugin", "Extism, reused plugin"),
        ],
        "aim": ("abs", 8_000.0),
    },
    {
        "path": "metered model call",
        "bench": "gateway",
        "figure": ("gateway/metered-call-sqlite-ledger", "metered, SQLite ledger"),
        "baselines": [("gateway/raw-http-post", "raw HTTP POST")],
        "aim": ("added", 300_000.0),
    },
]

SPECIAL = set("\\.+*?()|[]{}^$")


def escape(text):
    """A regex matching `text` literally, for Rust's regex crate as for Python's."""
    return "".join("\\" + c if c in SPECIAL else c for c in text)


def bench_filter(bench):
    ids = [p["figure"][0] for p in PATHS if p["bench"] == bench]
    ids += [b[0] for p in PATHS if p["bench"] == bench for b in p["baselines"]]
    ids = [i.removesuffix(SLOPE) for i in ids if i != FRESH_WORKTREE]
    # The Extism baselines are another bench binary's (bench/baselines/extism).
    ids = [i for i in ids if not i.startswith("route-extism/")]
    if not ids:
        sys.exit(f"no comparison reads bench `{bench}`")
    return "^(" + "|".join(escape(i) for i in ids) + ")$"


def means(dirs, since):
    """full id -> mean in ns, of the results written at or after `since`."""
    found = {}
    for d in dirs:
        for bench_json in Path(d).glob("**/new/benchmark.json"):
            estimates = bench_json.with_name("estimates.json")
            if not estimates.is_file() or estimates.stat().st_mtime < since:
                continue
            full_id = json.loads(bench_json.read_text())["full_id"]
            estimate = json.loads(estimates.read_text())
            found[full_id] = estimate["mean"]["point_estimate"]
            if estimate.get("slope"):
                found[full_id + SLOPE] = estimate["slope"]["point_estimate"]
        iterations = Path(d) / ITERATIONS_FILE
        if iterations.is_file() and iterations.stat().st_mtime >= since:
            found[FRESH_WORKTREE] = json.loads(iterations.read_text())["first_ns"]
    return found


def duration(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def aim_text(path):
    kind, value = path["aim"]
    if "aim_text" in path:
        return path["aim_text"]
    if kind == "added":
        return f"≤ {duration(value)} added"
    return f"≤ {duration(value)}"


def rows(found):
    for p in PATHS:
        fig_id, fig_label = p["figure"]
        fig = found.get(fig_id)
        fig_text = f"{fig_label}: " + (duration(fig) if fig is not None else "not measured")
        kind, value = p["aim"]
        for n, (base_id, base_label) in enumerate(p["baselines"]):
            base = found.get(base_id)
            base_text = f"{base_label}: " + (
                duration(base) if base is not None else "not measured"
            )
            if fig is None or base is None:
                compare = "–"
            elif kind == "added":
                compare = f"{'+' if fig >= base else '−'}{duration(abs(fig - base))}"
            else:
                compare = f"{fig / base:.2f} ×"
            met = ""
            if n == 0:
                if kind == "abs":
                    met = "–" if fig is None else ("yes" if fig <= value else "no")
                elif fig is None or base is None:
                    met = "–"
                elif kind == "ratio":
                    met = "yes" if fig <= value * base else "no"
                else:
                    met = "yes" if fig - base <= value else "no"
            first = n == 0
            yield [
                p["path"] if first else "",
                fig_text if first else "",
                base_text,
                compare,
                aim_text(p) if first else "",
                met,
            ]


def table(found):
    head = ["path", "figure (mean)", "baseline (mean)", "ratio / added", "aim", "met?"]
    body = list(rows(found))
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    return "\n".join(out)


def main(argv):
    if len(argv) == 2 and argv[0] == "filter":
        print(bench_filter(argv[1]))
    elif len(argv) >= 3 and argv[0] == "table" and argv[1] == "--since":
        print(table(means(argv[3:] or ["target/criterion"], float(argv[2]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
