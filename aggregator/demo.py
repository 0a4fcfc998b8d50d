"""`aggregator demo`: the whole pipeline against bundled sample feeds, fully offline.

The samples are served by a throwaway HTTP server on 127.0.0.1 so the demo exercises the
real fetch path (conditional GET, encodings), not a shortcut that reads files.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from aggregator import config, pipeline
from aggregator.store import Store


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def run(output: Path) -> int:
    samples = resources.files("aggregator") / "samples"
    with resources.as_file(samples) as sample_dir:
        handler = functools.partial(_QuietHandler, directory=str(sample_dir))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            text = (sample_dir / "demo.yaml").read_text(encoding="utf-8").replace("{base}", base)
            cfg = config.parse(text, "demo.yaml", Path.cwd())
            cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": output})})
            cfg._base_dir = Path.cwd()
            with tempfile.TemporaryDirectory(prefix="aggregator-demo-") as tmp:
                store = Store(f"sqlite:///{Path(tmp) / 'demo.db'}")
                try:
                    report = pipeline.run_cycle(cfg, store, forced=True)
                finally:
                    store.close()
        finally:
            server.shutdown()
            server.server_close()
    for r in report.feeds:
        print(f"{r.outcome:12} {r.name}: {r.message}")
    index = (cfg.output_dir / "index.html").resolve()
    print(f"published {report.published} items; open file://{index} in a browser")
    return 0
