"""What the workshop notebooks share: where the learner's files live, the key password, and
running a ``labkit`` verb so the cell shows the real tool's command beside it.

    from labkit import workshop
    workshop.use_password()                     # COSIGN_PASSWORD, never printed
    workshop.run(f"labkit sign --key {workshop.key()} --tlog-upload=false {ref}")

The learner's keys live in ``$LABKIT_HOME/workshop/`` (0700), never next to the notebooks, so a
``git add notebooks/`` cannot pick up a private key.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.keys import PASSWORD_ENV
from labkit.lab.state import LabHome
from labkit.oci.base_image import PULL_BASE_ENV

if TYPE_CHECKING:
    from labkit.lab import Lab

IMAGE_REPOSITORY = "workshop/hello"  # the repository every notebook pushes the sample image to
IMAGE_TAG = "v1"
SAMPLE_APP = Path(__file__).parent / "samples" / "hello-app"
POLICY_TEMPLATES = Path(__file__).parent / "samples" / "policies"
PASSWORD_FILE = "password"

# labkit verbs whose flags, output and exit codes are cosign's (or crane's) own.
_COSIGN_VERBS = {"generate-key-pair", "import-key-pair", "public-key", "sign", "verify",
                 "sign-blob", "verify-blob", "triangulate", "tree"}
# labkit's own verbs whose flags match another tool's command.
_OTHER_TOOLS = {"digest": "crane digest", "build": "docker buildx build"}


def workdir(home: Path | str | None = None) -> Path:
    """``$LABKIT_HOME/workshop``: the learner's keys and files, created 0700 on first use."""
    path = LabHome.resolve(home).root / "workshop"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def shown(path: Path, home: Path | str | None = None) -> str:
    """``path`` as learners can type it: under the lab's home it reads ``$LABKIT_HOME/…`` (or
    ``~/.labkit/…`` for the default home), so a saved notebook shows no machine's temp paths."""
    root = LabHome.resolve(home).root
    try:
        rest = Path(path).resolve().relative_to(root)
    except ValueError:
        return str(path)
    prefix = "$LABKIT_HOME" if home is not None or os.environ.get("LABKIT_HOME") else "~/.labkit"
    return f"{prefix}/{rest}"


def key(home: Path | str | None = None) -> Path:
    """The learner's cosign private key (``generate-key-pair`` writes it in notebook 01)."""
    return workdir(home) / "cosign.key"


def public_key(home: Path | str | None = None) -> Path:
    return workdir(home) / "cosign.pub"


def copy_sample(home: Path | str | None = None) -> Path:
    """The sample app, copied into the workshop directory as ``hello-app/`` for the learner to
    build (and change). An existing copy is left as the learner made it."""
    import shutil

    target = workdir(home) / SAMPLE_APP.name
    if not target.exists():
        shutil.copytree(SAMPLE_APP, target)
    return target


def write_policy(template: str, target: str | Path, *, public_key: str | Path, **values: str) -> Path:
    """Fill ``samples/policies/TEMPLATE.yaml`` and write it to ``target``; return ``target``.

    ``${PUBLIC_KEY}`` (alone on its line) becomes the PEM of ``public_key`` at that line's
    indentation; ``${NAME}`` becomes ``values["name"]`` (``registry="…"`` fills ``${REGISTRY}``).
    A placeholder left unfilled is an error, so a template and its caller cannot drift apart.
    """
    import re

    text = (POLICY_TEMPLATES / f"{template}.yaml").read_text()
    pem = Path(public_key).read_text().strip().splitlines()

    def key_block(match: re.Match[str]) -> str:
        return "\n".join(match.group(1) + line for line in pem)

    text = re.sub(r"(?m)^([ \t]*)\$\{PUBLIC_KEY\}$", key_block, text)
    for name, value in values.items():
        text = text.replace("${" + name.upper() + "}", value)
    left = sorted(set(re.findall(r"\$\{([A-Z_]+)\}", text)))
    if left:
        raise ValueError(f"{template}: no value for {', '.join(left)}")
    target = Path(target)
    target.write_text(text)
    return target


def push_private_sample(lab: Lab, home: Path | str | None = None) -> str:
    """Push the sample to the lab's password-protected registry and sign it by digest with the
    workshop key (``docker login``, ``docker push``, ``cosign sign``); return the image as pods
    name it, by digest."""
    from labkit import keys
    from labkit.oci.base_image import build_like_cli
    from labkit.oci.client import RegistryClient
    from labkit.signing.sign import sign_image

    private = lab.private_registry
    use_password(home)
    image = build_like_cli(copy_sample(home))
    with RegistryClient(credentials=private.credentials()) as client:
        digest = client.push_image(f"{private.host}/private/hello:v1", image)
        sign_image(f"{private.host}/private/hello@{digest}",
                   keys.load_private_key(key(home), os.environ[PASSWORD_ENV].encode()), client=client)
    return f"{private.pod_host}/private/hello@{digest}"


def side_by_side(left: str, right: str, titles: tuple[str, str] = ("", ""), gap: int = 3) -> str:
    """Two texts in two columns (the left padded to its longest line), for comparing policies."""
    import itertools

    lines = [left.splitlines(), right.splitlines()]
    if any(titles):
        lines = [[titles[0], "-" * len(titles[0]), *lines[0]], [titles[1], "-" * len(titles[1]), *lines[1]]]
    width = max((len(line) for line in lines[0]), default=0) + gap
    return "\n".join(f"{a:<{width}}{b}".rstrip() for a, b in itertools.zip_longest(*lines, fillvalue=""))


def policy_template(name: str) -> str:
    """``samples/policies/NAME.yaml`` as written, without its comment lines: what a policy of that
    kind looks like before ``write_policy`` fills in the key and the registry."""
    text = (POLICY_TEMPLATES / f"{name}.yaml").read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def start(home: Path | str | None = None, *, sigstore: bool = False) -> Lab:
    """Every notebook's first step: the lab (``LAB_BACKEND``, default embedded; started or
    reconnected; with its own Sigstore when ``sigstore``), the workshop directory as the working
    directory, and the key password set."""
    from labkit.lab import Lab

    lab = Lab.start(backend=os.environ.get("LAB_BACKEND", "embedded"), home=home, sigstore=sigstore)
    if sigstore:  # what `eval "$(labkit lab env)"` gives a terminal: the lab's Sigstore for cosign
        os.environ.update(lab.sigstore.env())
    # `workshop.run` builds in this process: the lab decides whether builds pull FROM (kind) or
    # stay offline (embedded, native), whatever an earlier lab in this kernel set.
    if lab.pulls_base_images:
        os.environ[PULL_BASE_ENV] = "1"
    else:
        os.environ.pop(PULL_BASE_ENV, None)
    os.chdir(workdir(home))
    use_password(home)
    _labkit_on_path()
    return lab


def _labkit_on_path() -> None:
    """Put this environment's ``labkit`` on the kernel's PATH, so ``!labkit …`` cells run it
    (``make lab`` does the same for JupyterLab's terminals)."""
    import shutil
    import sys

    if shutil.which("labkit") is None:
        os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def tool(name: str) -> str:
    """The command a ``!`` cell runs for ``name``: the real tool when it is installed, else the
    ``labkit`` verbs that take the same flags and print the same output.

    ``cosign`` counts only as v2: v3 signs in the bundle format by default, which the ClusterPolicy
    and policy-controller of notebooks 06 and 07 do not read (notebook 09 explains).
    """
    import shutil
    import subprocess

    _labkit_on_path()
    found = shutil.which(name)
    if found is None or name not in ("cosign", "crane"):
        return "labkit"
    if name == "cosign":
        try:
            version = subprocess.run([found, "version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return "labkit"
        if "v2." not in version:
            return "labkit"
    return name


def clear_policies(lab: Lab, engine: str) -> None:
    """``kubectl delete`` every policy of one engine (``kyverno`` or ``policy-controller``) in the
    lab, printing what was there: later notebooks start without earlier notebooks' policies."""
    from labkit.lab.names import POLICY_GROUPS, api_group

    for policy in lab.policies():
        print(policy["kind"], policy["metadata"]["name"])
        if POLICY_GROUPS.get(api_group(policy)) == engine:
            print(lab.delete(policy)[0])


def use_password(home: Path | str | None = None) -> None:
    """Set ``COSIGN_PASSWORD`` for this kernel, as cosign reads it, without showing it.

    A Jupyter kernel has no terminal to prompt on, so cosign (and labkit) would read the password
    from stdin. An explicit ``COSIGN_PASSWORD`` wins; otherwise the workshop makes one random
    password per lab and keeps it in ``workshop/password`` (0600) so every notebook opens the key.
    """
    if PASSWORD_ENV in os.environ:
        return
    path = workdir(home) / PASSWORD_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(18))
    os.environ[PASSWORD_ENV] = path.read_text().strip()


@dataclass(frozen=True)
class CommandResult:
    """One ``labkit`` run: what was typed, what the real tool would have been, what it printed."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def equivalent(self) -> str | None:
        """The same command for the real tool, when labkit's verb is a drop-in for it."""
        verb, rest = self.argv[0], self.argv[1:]
        if verb in _COSIGN_VERBS:
            return shlex.join(["cosign", verb, *rest])
        if verb in _OTHER_TOOLS:
            return " ".join([_OTHER_TOOLS[verb], shlex.join(rest)])
        return None

    def transcript(self) -> str:
        lines = [f"$ {shlex.join(['labkit', *self.argv])}"]
        if self.equivalent:
            lines.append(f"  (real tool: {self.equivalent})")
        # cosign writes its progress to stderr and results to stdout; a terminal shows both.
        text = self.stderr + self.stdout
        lines.extend(text.rstrip("\n").splitlines() if text.strip() else [])
        if self.exit_code:
            lines.append(f"[exit code {self.exit_code}]")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.transcript()

    def _ipython_display_(self) -> None:
        """Nothing: ``run`` already showed the transcript as the command ran (print it to see it again)."""


def run(command: str, *, show: bool = True) -> CommandResult:
    """Run ``labkit VERB …`` in this process and show it as a terminal would.

    The verb runs exactly as on the command line (same parser, output and exit code), so what
    a cell shows is what the learner will see when they type it, and what cosign prints.
    """
    from labkit.cli import main

    argv = shlex.split(command)
    if not argv or argv[0] != "labkit":
        raise ValueError(f"workshop.run runs labkit verbs; got {command!r}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv[1:])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    result = CommandResult(tuple(argv[1:]), code, out.getvalue(), err.getvalue())
    if show:
        print(result.transcript())
    return result


def describe_key_file(path: str | Path) -> str:
    """A cosign private key file's header and structure, without its secret parts."""
    import base64
    import json

    from labkit.keys import pem_decode_first

    data = Path(path).read_bytes()
    mode = Path(path).stat().st_mode & 0o777
    block = pem_decode_first(data)
    if block is None:
        return f"{path}: not a PEM file"
    lines = [f"{path}  (mode {mode:04o}, {len(data)} bytes)",
             # The armor lines are described, not printed: a saved notebook must never look like a key.
             f"PEM block type: {block.type} (the header cosign writes)",
             "  base64 of a JSON envelope:"]
    try:
        envelope = json.loads(block.body)
    except ValueError:
        lines.append(f"  (not JSON: {len(block.body)} bytes of DER — an unencrypted key, not cosign's format)")
        return "\n".join(lines)
    kdf, cipher = envelope.get("kdf", {}), envelope.get("cipher", {})
    params = kdf.get("params", {})
    lines += [
        f"  kdf:    {kdf.get('name')} (N={params.get('N')}, r={params.get('r')}, p={params.get('p')}), "
        f"salt {len(base64.b64decode(kdf.get('salt', '')))} random bytes",
        f"  cipher: {cipher.get('name')}, nonce {len(base64.b64decode(cipher.get('nonce', '')))} random bytes",
        f"  ciphertext: {len(base64.b64decode(envelope.get('ciphertext', '')))} bytes "
        "(the PKCS#8 private key, sealed with a key derived from your password)",
    ]
    return "\n".join(lines)


def describe_signature_artifact(ref: str, *, allow_insecure: bool = False) -> str:
    """The ``sha256-<digest>.sig`` artifact cosign reads for ``ref``, taken apart: the manifest's
    media types, and per signature its annotation and the signed payload.

    Digests of the artifact's own parts are left out: they hash payloads that name the registry
    (host and port), so they differ on every machine, and the text says what each is a hash of.
    """
    import json

    from labkit.errors import NoSignaturesError
    from labkit.oci.client import RegistryClient
    from labkit.oci.reference import Reference
    from labkit.signing.artifact import SignatureImage, attachment_ref, signature_repository_from_env

    image = Reference.parse(ref)
    with RegistryClient(allow_insecure=allow_insecure) as client:
        digest = image.digest or client.resolve(image)
        sig_ref = attachment_ref(image, digest, repository=signature_repository_from_env())
        sig = SignatureImage.fetch(client, sig_ref, with_config=True)
    if sig is None:
        raise NoSignaturesError("no signatures found", hint=f"nothing is signed for {image.name}@{digest}")
    lines = [f"{sig_ref}", f"  an OCI image manifest ({sig.media_type})",
             f"  config: {len(sig.config.get('rootfs', {}).get('diff_ids', []))} diff_ids, one per layer "
             "(each the sha256 of a payload)"]
    for number, layer in enumerate(sig.layers, 1):
        lines.append(f"  layer {number}: {layer.media_type}, {len(layer.payload)} bytes "
                     "(its digest is the sha256 of the payload)")
        for key, value in layer.annotations.items():
            lines.append(f"    annotation {key}: {value}")
        payload = json.dumps(json.loads(layer.payload), indent=2)
        lines.append("    payload (what the signature covers):")
        lines.extend(f"      {line}" for line in payload.splitlines())
    return "\n".join(lines)


def numbered(path: str | Path, first: int = 1, last: int | None = None) -> str:
    """Lines ``first``..``last`` (1-based, inclusive) of a text file, numbered as an editor shows them."""
    lines = Path(path).read_text().splitlines()
    last = len(lines) if last is None else last
    return "\n".join(f"{n:3}  {lines[n - 1]}" for n in range(first, last + 1))
