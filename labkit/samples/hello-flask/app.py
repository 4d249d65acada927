"""The lab's sample workload: a one-page Flask app whose image learners build, sign and deploy."""

import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return f"Hello from a signed image! (host {os.environ.get('HOSTNAME', 'unknown')})\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
