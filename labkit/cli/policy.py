"""``labkit policy lint`` and ``labkit policy test``: admission policies without a cluster.

Exit codes: ``lint`` 0 valid, 2 invalid; ``test`` 0 admitted, 1 denied, 2 bad input (the
``PolicyError``/``UsageError`` codes, printed by ``labkit.cli.main``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labkit.cli._flags import no_match_flag, registry_flags
from labkit.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pol = subparsers.add_parser("policy", help="check admission policies (Kyverno, policy-controller)")
    verbs = pol.add_subparsers(dest="policy_verb", required=True, metavar="VERB")

    lint = verbs.add_parser(
        "lint",
        help="validate policy files as the cluster would admit them",
        description="Load each FILE (Kyverno ClusterPolicy/Policy, ImageValidatingPolicy, "
        "ClusterImagePolicy, policy-controller TrustRoot) with strict field validation and the engine's own "
        "policy checks; warnings the engine would give are printed on stderr. "
        "Exit 0 when all are valid, 2 otherwise.",
    )
    lint.add_argument("files", nargs="+", metavar="FILE")
    lint.set_defaults(func=_lint)

    test = verbs.add_parser(
        "test",
        help="decide whether a resource would be admitted",
        description="Evaluate a Pod or workload against the policies, verifying signatures in the "
        "registry, and print the decision. Exit 0 admitted, 1 denied, 2 bad input. "
        "policy-controller only checks namespaces labelled policy.sigstore.dev/include=true: "
        "pass that label with --namespace-labels to have its policies apply.",
    )
    test.add_argument("--policy", required=True, nargs="+", metavar="FILE", help="policy files")
    test.add_argument("--resource", required=True, metavar="FILE", help="the Kubernetes object (YAML)")
    test.add_argument("--namespace-labels", default="", metavar="K=V,…",
                      help="labels of the resource's namespace (namespaceSelector, opt-in labels)")
    no_match_flag(test)
    registry_flags(test)
    test.add_argument("--output", choices=("text", "json"), default="text")
    test.set_defaults(func=_test)


def _lint(args: argparse.Namespace) -> int:
    # imported per verb: the engine is slow to load
    from labkit.policy.load import load_objects
    from labkit.policy.policy_controller_webhooks import cip_warnings
    from labkit.policy.schema import ClusterImagePolicy

    for name in args.files:
        objects = load_objects(Path(name))
        for obj in objects:
            for warning in cip_warnings(obj) if isinstance(obj, ClusterImagePolicy) else []:
                print(f"Warning: {warning}", file=sys.stderr)
        kinds = ", ".join(f"{type(p).__name__} {p.name}" for p in objects)
        print(f"{name}: valid ({kinds})")
    return 0


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--namespace-labels: {item!r} is not KEY=VALUE",
                             hint="write e.g. --namespace-labels policy.sigstore.dev/include=true,team=a")
        labels[key] = value
    return labels


def _read_resource(path: str) -> Mapping[str, Any]:
    from labkit._internal.yamlsafe import METADATA_HINT, YAMLInputError, load_all, object_meta_error

    try:
        docs = load_all(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"--resource {path}: cannot read: {exc.strerror}") from exc
    except YAMLInputError as exc:
        raise UsageError(f"--resource {path}: {exc}", hint=exc.hint) from None
    doc = docs[0] if len(docs) == 1 else None
    if not isinstance(doc, dict) or "kind" not in doc:
        raise UsageError(f"--resource {path}: expected one Kubernetes object with a kind")
    if meta_error := object_meta_error(doc):
        raise UsageError(f'unable to decode "{path}": {meta_error}', hint=METADATA_HINT)
    return doc


def _test(args: argparse.Namespace) -> int:
    from labkit.policy.load import load_objects
    from labkit.policy.phases import decide_against_registry, format_decision

    labels = parse_labels(args.namespace_labels)
    resource = _read_resource(args.resource)
    # TrustRoots too: keyless ClusterImagePolicies name them (trustRootRef)
    policies = [p for f in args.policy for p in load_objects(Path(f))]
    decision = decide_against_registry(policies, resource, namespace_labels=labels,
                                       no_match_policy=args.no_match_policy,
                                       allow_insecure_registry=args.allow_insecure_registry)
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(decision), indent=2, default=str))
    else:
        for warning in decision.warnings:
            print(f"Warning: {warning}", file=sys.stderr)
        print(format_decision(decision))
    return 0 if decision.allowed else 1
