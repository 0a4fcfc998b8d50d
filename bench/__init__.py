"""Benchmark harness: a local provider farm and the scenarios measured against it.

    corpus ──► farm (own process, 127.0.0.1) ◄── worker (fresh process per measured run)
    seeded       serves the feeds: ETag/304,       cold / warm / churn cycle, publish,
    feeds        gzip, churn, slow and failing     parser floor, naive loop, reader peer
                                 ▲
                  run ───────────┘  orchestrates, takes medians, writes results/latest.{json,md}

- corpus: deterministic Korean/English feeds (UTF-8 and EUC-KR, RSS and Atom, reprints).
- farm:   the HTTP server playing N providers; `Farm` starts it in a separate process.
- worker: one scenario in one process; prints a JSON line with wall, CPU and peak RSS.
- run:    `python -m bench.run`, the one command (see the README's "Benchmarks" section).
- report: machine info, targets and the Markdown table.
"""
