"""Notebook widgets (ipywidgets): a key panel, a sign/verify panel, a policy playground, a
supply-chain tree view, and PolicyReports in Policy Reporter's views. Each widget is a thin face
on a plain function that is tested without a browser; buttons run the same ``labkit`` verbs a
terminal would (``labkit.workshop.run``).

Stable DOM hooks for browser tests: the playground's editor is a textarea inside an element with
class ``labkit-policy-editor``, and its verdict is the element with class ``labkit-decision``
(its text starts with ``admitted``, ``denied by …``, ``invalid policy`` or ``invalid namespace
labels``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import workshop
from labkit.errors import LabkitError

if TYPE_CHECKING:  # the admission package pulls the webhook in: imported where used
    from labkit.admission.reporter import Dashboard, Filter, PolicyDetails, PolicySource, Result


class _Panel:
    """A widget with a short plain-text face: what a notebook saved without widget state (a web
    page, a diff) shows instead of the widget's whole repr."""

    widget: Any
    summary = "labkit widget"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs))
        bundle["text/plain"] = f"{self.summary} (run the notebook in JupyterLab to use it)"
        return bundle


# --- the policy playground ---------------------------------------------------------------------


@dataclass(frozen=True)
class PlaygroundResult:
    """``allowed`` is None when the policy itself does not load (then ``text`` says why)."""

    allowed: bool | None
    text: str


def playground_decision(policy_yaml: str, image: str, *, namespace_labels: str = "",
                        no_match_policy: str = "deny", reach: tuple[str, str] | None = None) -> PlaygroundResult:
    """Decide a one-container Pod running ``image`` under the policies in ``policy_yaml``, verifying
    signatures in the registry the image names — what ``labkit policy test`` prints.

    ``reach`` is ``(pod_host, host)`` when pods name the registry differently from this machine
    (kind: ``registry.local:5000`` vs ``localhost:5001``): the decision is made through ``host``
    and reported with ``pod_host``, as the cluster would see it.
    """
    if reach and reach[0] != reach[1]:
        pod_host, host = reach
        result = playground_decision(policy_yaml.replace(pod_host, host), image.replace(pod_host, host),
                                     namespace_labels=namespace_labels, no_match_policy=no_match_policy)
        return PlaygroundResult(result.allowed, result.text.replace(host, pod_host))
    from labkit.cli.policy import parse_labels
    from labkit.lab import pod
    from labkit.policy.load import load_policies
    from labkit.policy.phases import decide_against_registry, format_decision

    try:
        labels = parse_labels(namespace_labels)
    except LabkitError as exc:
        return PlaygroundResult(None, f"invalid namespace labels: {exc.diagnostics()}")
    try:
        policies = load_policies(policy_yaml)
        decision = decide_against_registry(policies, pod("playground", image), namespace_labels=labels,
                                           no_match_policy=no_match_policy)
    except LabkitError as exc:
        return PlaygroundResult(None, f"invalid policy: {exc.diagnostics()}")
    warnings = "".join(f"Warning: {w}\n" for w in decision.warnings)
    return PlaygroundResult(decision.allowed, warnings + format_decision(decision))


class PolicyPlayground(_Panel):
    """Edit policy YAML, pick an image, see the decision and its trace; re-decided on each edit
    (when the editor loses focus, so half-typed YAML is not judged)."""

    summary = "Policy playground: edit the policy, pick an image, see the decision"

    def __init__(self, policy_yaml: str, images: Sequence[str], *, namespace_labels: str = "",
                 lab: Any = None) -> None:
        import ipywidgets as w

        self.reach = (lab.registry.pod_host, lab.registry.host) if lab is not None else None
        self.editor = w.Textarea(value=policy_yaml, continuous_update=False,
                                 layout=w.Layout(width="100%", height="22em"))
        self.editor.add_class("labkit-policy-editor")
        self.image = w.Combobox(value=images[0] if images else "", options=list(images),
                                description="image", continuous_update=False, layout=w.Layout(width="100%"))
        self.labels = w.Text(value=namespace_labels, description="ns labels", continuous_update=False,
                             placeholder="k=v,… (policy.sigstore.dev/include=true opts in)")
        self.output = w.HTML()
        self.output.add_class("labkit-decision")
        for control in (self.editor, self.image, self.labels):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = w.VBox([self.editor, self.image, self.labels, self.output])
        self.result = PlaygroundResult(None, "")
        self.update()

    def update(self) -> PlaygroundResult:
        self.result = playground_decision(self.editor.value, self.image.value, namespace_labels=self.labels.value,
                                          reach=self.reach)
        colour = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}[self.result.allowed]
        self.output.value = (f'<pre style="border-left: 4px solid {colour}; padding-left: .6em; '
                             f'white-space: pre-wrap">{html.escape(self.result.text)}</pre>')
        return self.result


# --- keys --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    name: str  # the pair's prefix: NAME.key / NAME.pub
    private_mode: str  # e.g. 0600, or "missing"
    algorithm: str
    fingerprint: str  # SHA-256 of the public key's DER, as cosign's key IDs are derived


def key_rows(directory: Path | None = None) -> list[KeyRow]:
    """The key pairs in the workshop directory (a ``.pub`` makes a row; its ``.key`` may be absent)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from labkit import keys
    from labkit.signing.verify import key_fingerprint

    directory = directory or workshop.workdir()
    rows = []
    for pub in sorted(directory.glob("*.pub")):
        private = pub.with_suffix(".key")
        mode = f"{private.stat().st_mode & 0o777:04o}" if private.exists() else "missing"
        try:
            key = keys.load_public_key(pub)
        except LabkitError as exc:
            rows.append(KeyRow(pub.stem, mode, f"unreadable: {exc.message}", ""))
            continue
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384",
                         "secp521r1": "ECDSA P-521"}.get(key.curve.name, key.curve.name)
        elif isinstance(key, rsa.RSAPublicKey):
            algorithm = f"RSA {key.key_size}"
        else:
            algorithm = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else type(key).__name__
        rows.append(KeyRow(pub.stem, mode, algorithm, key_fingerprint(key)))
    return rows


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class KeyPanel(_Panel):
    """The workshop's key pairs, and a button that makes a new one (``generate-key-pair``)."""

    summary = "Key panel: the workshop's key pairs, and a button to generate one"

    def __init__(self) -> None:
        import ipywidgets as w

        self.table = w.HTML()
        self.prefix = w.Text(value="extra", description="prefix")
        self.button = w.Button(description="Generate key pair", icon="key")
        self.log = w.Output()
        self.button.on_click(lambda _b: self.generate(self.prefix.value))
        self.widget = w.VBox([self.table, w.HBox([self.prefix, self.button]), self.log])
        self.refresh()

    def refresh(self) -> None:
        rows = [(r.name, r.private_mode, r.algorithm, r.fingerprint[:16] + "…") for r in key_rows()]
        self.table.value = _table(("pair", ".key mode", "algorithm", "public key SHA-256"), rows)

    def generate(self, prefix: str) -> workshop.CommandResult:
        workshop.use_password()
        with self.log:
            result = workshop.run(f"labkit generate-key-pair --output-key-prefix {workshop.workdir() / prefix}")
        self.refresh()
        return result


# --- sign and verify ---------------------------------------------------------------------------


class SignVerifyPanel(_Panel):
    """Sign or verify an image with one of the workshop's keys, showing cosign's output."""

    summary = "Sign/verify panel: sign or verify an image with a workshop key"

    def __init__(self, image: str = "") -> None:
        import ipywidgets as w

        names = [r.name for r in key_rows()] or ["cosign"]
        self.image = w.Text(value=image, description="image", layout=w.Layout(width="100%"))
        self.key = w.Dropdown(options=names, value="cosign" if "cosign" in names else names[0], description="key")
        self.sign_button = w.Button(description="Sign", icon="pencil")
        self.verify_button = w.Button(description="Verify", icon="check")
        self.log = w.Output()
        self.sign_button.on_click(lambda _b: self.sign())
        self.verify_button.on_click(lambda _b: self.verify())
        self.widget = w.VBox([self.image, w.HBox([self.key, self.sign_button, self.verify_button]), self.log])

    def sign(self) -> workshop.CommandResult:
        workshop.use_password()
        key = workshop.workdir() / f"{self.key.value}.key"
        return self._run(f"labkit sign --key {key} --tlog-upload=false {self.image.value}")

    def verify(self) -> workshop.CommandResult:
        key = workshop.workdir() / f"{self.key.value}.pub"
        return self._run(f"labkit verify --key {key} --insecure-ignore-tlog -o text {self.image.value}")

    def _run(self, command: str) -> workshop.CommandResult:
        self.log.clear_output()
        with self.log:
            return workshop.run(command)


# --- the supply-chain tree -----------------------------------------------------------------------


def tree_text(ref: str) -> str:
    """``cosign tree`` for ``ref``, followed by each signature's signed digest and annotations
    (or why its payload cannot be read)."""
    from labkit.errors import VerificationError
    from labkit.oci.client import RegistryClient
    from labkit.oci.reference import Reference
    from labkit.signing.artifact import SignatureImage, attachment_ref, signature_repository_from_env
    from labkit.signing.payload import SimpleSigningPayload
    from labkit.signing.tree import format_tree, tree

    image, repository = Reference.parse(ref), signature_repository_from_env()
    with RegistryClient() as client:
        nodes = tree(image, client=client, repository=repository)
        lines = [format_tree(ref, nodes).rstrip("\n")]
        digest = image.digest or client.resolve(image)
        sig = SignatureImage.fetch(client, attachment_ref(image, digest, repository=repository))
    for layer in sig.layers if sig else []:
        try:  # read as cosign reads it: a crafted payload is shown, not a traceback
            claims = SimpleSigningPayload.from_json(layer.payload)
        except VerificationError as exc:
            lines.append(f"   unreadable payload: {exc.message}")
            continue
        extra = ", ".join(f"{k}={v}" for k, v in (claims.optional or {}).items()) or "no annotations"
        lines.append(f"   signed {claims.digest[:19]}… ({extra})")
    return "\n".join(lines)


def tree_view(ref: str) -> Any:
    """:func:`tree_text` as static HTML: it stays readable in a saved notebook on a web page."""
    from IPython.display import HTML

    return HTML(f"<pre>{html.escape(tree_text(ref))}</pre>")


# --- policy reports ------------------------------------------------------------------------------


def report_table(reports: Sequence[dict[str, Any]]) -> Any:
    """PolicyReport results as an HTML table (``kubectl get policyreports -o wide``, flattened)."""
    from IPython.display import HTML

    from labkit.admission.reports import report_rows

    rows = [(r.namespace, r.resource, r.policy, r.rule, r.result, r.message) for r in report_rows(reports)]
    return HTML(_table(("namespace", "resource", "policy", "rule", "result", "message"), rows))


def report_chart(reports: Sequence[dict[str, Any]]) -> Any:
    """A stacked bar per policy: how many pass / fail / warn / error / skip results it reported."""
    import matplotlib.pyplot as plt  # in a notebook, pyplot's inline backend renders the returned figure

    from labkit.admission.reports import result_counts

    counts = result_counts(reports)
    colours = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "error": "#8250df", "skip": "#6e7781"}
    figure, axes = plt.subplots(figsize=(7, 1.6 + 0.5 * max(1, len(counts))))
    policies = list(counts)
    left = [0] * len(policies)
    for result, colour in colours.items():
        values = [counts[p][result] for p in policies]
        axes.barh(policies, values, left=left, color=colour, label=result)
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_xlabel("results in PolicyReports")
    axes.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # MaxNLocator's
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    figure.tight_layout()
    plt.close(figure)
    return figure


# --- Policy Reporter's views ---------------------------------------------------------------------


def _status_chip(status: str, count: int | None = None) -> str:
    from labkit.admission.reporter import STATUS_COLOURS

    colour = STATUS_COLOURS.get(status, "#9E9E9E")
    label = status if count is None else f"{status} {count}"
    return (f'<span class="labkit-status labkit-status-{html.escape(status)}" style="background:{colour};'
            'color:#fff;border-radius:10px;padding:0 8px;margin-right:4px;white-space:nowrap">'
            f'{html.escape(label)}</span>')


def _status_bar(counts: dict[str, int]) -> str:
    """A stacked bar in the statuses' colours: one row of "Results per Namespace"."""
    from labkit.admission.reporter import STATUS_COLOURS, STATUSES

    total = sum(counts.values()) or 1
    cells = "".join(f'<div title="{s} {counts[s]}" style="width:{100 * counts[s] / total:.1f}%;'
                    f'background:{STATUS_COLOURS[s]}"></div>' for s in STATUSES if counts.get(s))
    return f'<div style="display:flex;height:14px;min-width:240px;background:#eee">{cells}</div>'


def _chips(counts: dict[str, int]) -> str:
    from labkit.admission.reporter import STATUSES

    return "".join(_status_chip(s, counts[s]) for s in STATUSES if counts.get(s) or s != "skip")


def _dashboard_html(view: Dashboard) -> str:
    from labkit.admission.reporter import title

    parts = [f"<h4>Dashboard: {view.count} results</h4>{_chips(view.total)}"]
    if not view.sources:
        parts.append("<p>No results found</p>")
    for s in view.sources:
        name = html.escape(title(s.source) or "(no source)")
        rows = [(html.escape(ns), _status_bar(c), _chips(c)) for ns, c in s.namespaces.items()]
        table = "".join(f"<tr><td>{ns}</td><td>{bar}</td><td>{chips}</td></tr>" for ns, bar, chips in rows)
        parts.append(f"<h4>{name}</h4><h5>{s.count} {name} Results</h5>{_chips(s.total)}"
                     f"<h5>{name} Results per Namespace</h5><table>{table or '<tr><td>(none)</td></tr>'}</table>"
                     f"<h5>{name} Cluster Scoped Results</h5>{_chips(s.cluster)}")
    return "".join(parts)


def _policies_html(view: Sequence[PolicySource]) -> str:
    from labkit.admission.reporter import SEVERITY_COLOURS, title

    parts = []
    for s in view:
        parts.append(f"<h4>{html.escape(title(s.source) or '(no source)')}</h4>")
        for category, items in s.categories.items():
            rows = "".join(
                f"<tr><td>{html.escape(i.name)}</td><td style='color:{SEVERITY_COLOURS.get(i.severity or 'info')}'>"
                f"{html.escape(i.severity)}</td><td>{_chips(i.counts)}</td></tr>" for i in items)
            parts.append(f"<h5>{html.escape(category)}</h5><table>{rows}</table>")
    return "".join(parts) or "<p>No policies found</p>"


def _details_html(view: PolicyDetails) -> str:
    from labkit.admission.reporter import title

    name, source = html.escape(view.title), html.escape(title(view.source) or "(no source)")
    parts = [f"<h4>{source}: {name}</h4><h5>{sum(view.total.values())} {source} Results</h5>{_chips(view.total)}",
             f"<h5>{name} Results per Namespace</h5><table>"
             + "".join(f"<tr><td>{html.escape(ns)}</td><td>{_status_bar(c)}</td><td>{_chips(c)}</td></tr>"
                       for ns, c in view.namespaces.items()) + "</table>"]
    if any(view.cluster.values()):
        parts.append(f"<h5>{name} cluster scoped results</h5>{_chips(view.cluster)}")
    headed = False
    for ns, rows in view.results.items():  # "" (cluster scoped) sorts first, as the page shows it
        if ns and not headed:
            parts.append("<h4>Namespace Scoped Results</h4>")
            headed = True
        parts.append(f"<h5>{html.escape(ns or 'Cluster Scoped Results')}</h5>"
                     + _result_table(rows, ("APIVersion", "Kind", "Name", "Rule", "Severity", "Status", "Message")))
    return "".join(parts)


_COLUMNS = {"Namespace": "namespace", "APIVersion": "api_version", "Kind": "kind", "Name": "name",
            "Policy": "policy", "Rule": "rule", "Severity": "severity", "Status": "status", "Message": "message"}


def _result_table(rows: Sequence[Result], headers: Sequence[str]) -> str:
    """Policy Reporter's result table (``policy/Results.vue``'s columns), the status as a chip."""
    def cell(r: Result, header: str) -> str:
        value = str(getattr(r, _COLUMNS[header]))
        return _status_chip(value) if header == "Status" else html.escape(value)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(r, h)}</td>" for h in headers) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _results_html(rows: Sequence[Result]) -> str:
    return _result_table(rows, ("Namespace", "APIVersion", "Kind", "Name", "Policy", "Rule", "Severity", "Status",
                                "Message"))


TAB_TITLES = ("Dashboard", "Policy Dashboard", "Policy Details", "Results")


class PolicyReporterView(_Panel):
    """PolicyReports in Policy Reporter's views, as tabs: Dashboard, Policy Dashboard, one
    policy's details (chosen in a dropdown) and Results filtered by namespace,
    kind, status and severity. Its plain-text face is :func:`labkit.admission.reporter.text`:
    every view, sorted, so a saved notebook diffs cleanly."""

    summary = "Policy Reporter views"

    def __init__(self, reports: Sequence[dict[str, Any]]) -> None:
        import ipywidgets as w

        from labkit.admission import reporter

        self.rows = reporter.results(reports)
        self.text = reporter.text(self.rows)
        options = reporter.filter_options(self.rows)
        names = [(f"{reporter.title(p.source) or '(no source)'}: {p.name}", (p.source, p.name))
                 for s in reporter.policies(self.rows) for items in s.categories.values() for p in items]
        self.policy = w.Dropdown(options=names or [("(no policies)", ("", ""))], description="policy")
        self.details = w.HTML()
        self.filters = {
            name: w.Dropdown(options=[("all", "")] + [(v or "(cluster)", v) for v in values], description=name)
            for name, values in (("namespace", options.namespaces), ("kind", options.kinds),
                                 ("status", options.statuses), ("severity", options.severities))}
        self.results = w.HTML()
        self.policy.observe(lambda _c: self.show_policy(), names="value")
        for dropdown in self.filters.values():
            dropdown.observe(lambda _c: self.show_results(), names="value")
        tabs = [w.HTML(_dashboard_html(reporter.dashboard(self.rows))),
                w.HTML(_policies_html(reporter.policies(self.rows))), w.VBox([self.policy, self.details]),
                w.VBox([w.HBox(list(self.filters.values())), self.results])]
        self.widget = w.Tab(children=tabs)
        for index, name in enumerate(TAB_TITLES):
            self.widget.set_title(index, name)
        self.show_policy()
        self.show_results()

    def selection(self) -> Filter:
        from labkit.admission.reporter import Filter

        def one(name: str) -> tuple[str, ...]:
            value = self.filters[name].value
            return (value,) if value else ()

        return Filter(namespaces=one("namespace"), kinds=one("kind"), statuses=one("status"),
                      severities=one("severity"))

    def show_policy(self) -> None:
        from labkit.admission.reporter import policy_details

        source, name = self.policy.value
        self.details.value = _details_html(policy_details(self.rows, name, source)) if name else ""

    def show_results(self) -> None:
        from labkit.admission.reporter import filter_results

        self.results.value = _results_html(filter_results(self.rows, self.selection()))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs))
        bundle["text/plain"] = self.text
        return bundle

    def __str__(self) -> str:
        return self.text


def policy_reporter(reports: Sequence[dict[str, Any]]) -> PolicyReporterView:
    """``reports`` (``lab.reports()``) as Policy Reporter shows them: Dashboard, Policies, a
    policy's details, Results (see :mod:`labkit.admission.reporter` for the views' sources)."""
    return PolicyReporterView(reports)
