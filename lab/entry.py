"""The lab's stand-in for an HTTP entry point (the website's customer-service redirect, source plan III.2).

    python -S lab/entry.py serve --listen ADDR:PORT --file PATH --pattern REGEX [--ready-file F]
    python -S lab/entry.py reload http://ADDR:PORT     (the entry point's reload command)

`serve` answers every GET with `302 Found`, `Location:` the URL its config file names (the one group of REGEX,
as a web server's `Redirect` line), and the same URL as the body. Like a real web server it reads the file at
start and on reload only: `POST /-/reload` re-reads it (answering the URL now served, or 500 with the reason
when the file does not hold exactly one such line: the old URL is kept). `reload` posts that and exits 0 on
200, 1 otherwise: the agent runs it after rewriting the file (site.yaml servers.NAME.switch_files reload).
Lab-only; standard library only, so it starts fast.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Entry:
    def __init__(self, file: Path, pattern: str) -> None:
        self.file, self.pattern = file, re.compile(pattern, re.MULTILINE)
        self.url = ""
        self.reloads = 0

    def load(self) -> str:
        """Read the file; raises ValueError unless it holds exactly one redirect line."""
        found = self.pattern.findall(self.file.read_text())
        if len(found) != 1:
            raise ValueError(f"{self.file}: expected one line matching {self.pattern.pattern!r}, found {len(found)}")
        self.url = found[0]
        self.reloads += 1
        return self.url


def _handler(entry: Entry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: str, location: str | None = None) -> None:
            data = (body + "\n").encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(302, entry.url, entry.url)

        def do_POST(self) -> None:
            if self.path != "/-/reload":
                self._answer(404, "not found")
                return
            try:
                self._answer(200, entry.load())
            except (OSError, ValueError) as exc:
                self._answer(500, f"reload failed, still serving {entry.url}: {exc}")

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write(f"entry {self.address_string()} {fmt % args}\n")

    return Handler


def serve(listen: str, file: Path, pattern: str, ready: Path | None) -> int:
    entry = Entry(file, pattern)
    entry.load()
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), _handler(entry))
    if ready is not None:
        ready.write_text(f"{host}:{server.server_address[1]}\n")
    server.serve_forever()
    return 0


def reload(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/-/reload", method="POST"),
                                    timeout=5) as r:
            print(r.read().decode().strip())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode().strip() or str(exc), file=sys.stderr)
    except OSError as exc:
        print(f"entry point not answering: {exc}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    opts = dict(zip(argv[1::2], argv[2::2], strict=False))
    if argv[:1] == ["serve"] and {"--listen", "--file", "--pattern"} <= set(opts):
        ready = Path(opts["--ready-file"]) if "--ready-file" in opts else None
        return serve(opts["--listen"], Path(opts["--file"]), opts["--pattern"], ready)
    if len(argv) == 2 and argv[0] == "reload":
        return reload(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
