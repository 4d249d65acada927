"""The lab's sample workload: a one-page web app whose image learners build, sign and deploy.

Only the standard library, so the official Python image runs it as it is: no `pip install`, no
RUN step, and labkit's builder (which runs no commands) makes the image Docker would.
"""

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"Hello from a signed image! (host {os.environ.get('HOSTNAME', 'unknown')})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    # PID 1 in a container ignores SIGTERM unless it handles it: a deleted pod would wait out its grace period.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ.get("PORT", "5000"))
    print(f"listening on port {port}")
    ThreadingHTTPServer(("0.0.0.0", port), Hello).serve_forever()
