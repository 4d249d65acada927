"""``python -m tests.lab.native_restart HOME WORKDIR``: the restart story on a native lab of its own,
run by tests/lab/test_native.py inside a network namespace of its own (the session's native lab
holds policy-controller's fixed ports in the test's). Prints one JSON object of what it saw."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from labkit.lab import Lab
from tests.lab import scenario


def main(home: Path, workdir: Path) -> dict[str, object]:
    cases = {c.object: c for c in scenario.cases()}

    def attempt(lab: Lab, subs: dict[str, str], name: str, suffix: str) -> list[object]:
        obj = scenario.pod(cases[name], subs)
        obj["metadata"]["name"] = f"{name}-{suffix}"
        result = lab.create(obj)
        return [result.admitted, result.message]

    lab = Lab.start("native", home)
    try:
        subs = scenario.prepare(lab, workdir)
        before = {n: attempt(lab, subs, n, "before") for n in ("kyverno-unsigned", "ivp-unsigned", "pc-unsigned")}
        registry = lab.registry.host
    finally:
        lab.stop()
    lab = Lab.start("native", home)
    try:
        after = {n: attempt(lab, subs, n, "after")
                 for n in ("kyverno-unsigned", "ivp-unsigned", "pc-unsigned", "kyverno-signed", "pc-signed")}
        return {"registry_before": registry, "registry_after": lab.registry.host, "before": before,
                "after": after, "stale": [str(s) for s in lab.stale_policies()],
                "policies": sorted(p["metadata"]["name"] for p in lab.policies())}
    finally:
        lab.stop()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
