# %% [markdown]
# # 09 · Signing in CI
#
# **You will**
# - read a GitHub Actions workflow that builds, pushes and signs **by digest**, line by line,
# - see where the digest comes from, how the key stays secret, and what keyless signing changes,
# - run the same pipeline against the lab, step by step.

# %%
import shutil

from labkit import check, workshop
from labkit.ci_workflow import TEMPLATE, check_workflow

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("09", lab)  # what this notebook uses from earlier ones; names the one to finish first
shutil.copy(TEMPLATE, "sign-by-digest.yml")  # your copy; the original is labkit/samples/github-actions/
print("copied", TEMPLATE.name)

# %% [markdown]
# ## The workflow, line by line
#
# **Trigger and permissions.** It runs on pushes to `main`. `permissions: {}` takes every token
# permission away at the top; the job asks only for what it needs: read the code, write packages
# (push to ghcr.io). Keyless signing would add `id-token: write`. The runner, `ubuntu-24.04`, is an
# amd64 machine.

# %%
print(workshop.numbered("sign-by-digest.yml", 3, 18))

# %% [markdown]
# **Pinned actions.** Each `uses:` names a full commit SHA, with the release as a comment. A tag like
# `@v7` can be moved to other code by whoever controls the action's repository — the tag-hijack story
# of notebook 00, one level up. `persist-credentials: false` keeps the token out of `.git/config`.
#
# **A lower-case image name.** `${{ github.repository }}` is `owner/name` as GitHub spells it
# (`My-Org/Hello`), but image repository names are lower case only: a build tagged
# `ghcr.io/My-Org/Hello:…` fails with `repository name must be lowercase`. Workflow expressions
# have no lower-case function, so a shell step does it — bash's `${GITHUB_REPOSITORY,,}` — and
# appends `IMAGE=…` to `$GITHUB_ENV`, which makes it `env.IMAGE` in every later step.
#
# **QEMU for arm64.** The runner is amd64; building `linux/arm64` runs the Dockerfile's `RUN` steps
# (a `pip install`, say; the workshop's sample has none) as arm64 programs. `docker/setup-qemu-action` registers QEMU's arm64 emulator
# with the kernel before the builder is set up; without it those steps fail with
# `exec format error`. (The other way: build each platform on a runner of its own CPU, such as
# `ubuntu-24.04-arm`.)

# %%
print(workshop.numbered("sign-by-digest.yml", 19, 34))

# %% [markdown]
# **Build and push.** The step has `id: build`, so later steps can read its outputs. It builds both
# platforms, pushes an index tagged with the commit SHA, and exposes the index **digest** as
# `steps.build.outputs.digest`. The tag uses the lower-case `env.IMAGE`.

# %%
print(workshop.numbered("sign-by-digest.yml", 35, 41))

# %% [markdown]
# **Sign the digest.** The digest arrives through `env:` — never pasted into `run:` as
# `${{ … }}`, which would let a crafted value become shell code — and `cosign sign` signs
# `IMAGE@DIGEST`, so it signs exactly what this job pushed even if the tag moves meanwhile.
# `--key env://COSIGN_PRIVATE_KEY` reads the key from an environment variable filled from a
# repository secret (the contents of `cosign.key`); `COSIGN_PASSWORD` opens it; GitHub masks both in
# logs. `--yes` answers cosign's upload prompt; in CI the signature *is* recorded in the public
# Rekor log, which is what makes it auditable. `--recursive` signs each platform too. The installer
# step pins the cosign release (v3.1.3) instead of taking the installer's default, so an installer
# update cannot change what `cosign sign` writes; the two `--…=false` flags are the next section.

# %%
print(workshop.numbered("sign-by-digest.yml", 42, 63))

# %% [markdown]
# **Keyless.** Without a key, cosign asks GitHub for an OIDC token (`id-token: write`), gets a
# 10-minute certificate from Fulcio naming this workflow, signs, and records everything in Rekor.
# There is no secret to leak; verifiers and policies name the identity instead. The keyless
# template, `sign-keyless.yml`, differs from this one where it matters: the job's `id-token: write`,
# no secrets, no `--key`. The identity comes from Fulcio's GitHub configuration: the workflow file
# and the ref it ran for, after `https://github.com/` — a tag build, or the same file in a fork,
# is another identity:

# %%
import difflib

from labkit.ci_workflow import KEYLESS_TEMPLATE, TEMPLATE, check_workflow, github_keyless_identity

changed = difflib.unified_diff(TEMPLATE.read_text().splitlines(True), KEYLESS_TEMPLATE.read_text().splitlines(True),
                               "sign-by-digest.yml", "sign-keyless.yml", n=0)
print("".join(line for line in changed if not line.startswith("@@")))
issuer, identity = github_keyless_identity("OWNER/REPO", "image.yml")
print(f"--certificate-oidc-issuer {issuer}\n--certificate-identity {identity}")
print("keyless template:", "every check passes" if all(f.ok for f in check_workflow(KEYLESS_TEMPLATE)) else "fails")

# %% [markdown]
# ## Why the classic `.sig` format, with cosign v3
#
# cosign-installer v4 installs cosign v3, and cosign v3 changed what `cosign sign` writes. By default
# it makes a **Sigstore bundle** and attaches it to the image through the OCI *referrers* API; it
# writes no `sha256-<digest>.sig` tag. That is notebook 08's "cosign v3 bundles" attack, done to
# yourself: notebook 06's ClusterPolicy (`verifyImages`, `type: Cosign`) looks for the `.sig` tag,
# finds nothing and denies with `no signatures found`; policy-controller (notebook 07) cannot verify
# a bundle-format image signature with a key at all; `cosign verify` v2 finds nothing either. The
# pipeline stays green while every deployment of the image is denied.
#
# Two flags bring the classic format back, and both are needed. `--new-bundle-format=false` writes
# the `.sig` image; `--use-signing-config=false` turns off the signing config cosign v3 fetches from
# Sigstore, with which it refuses the first flag (`must provide --new-bundle-format or --bundle …`).
# Without a signing config, cosign uses the Rekor and Fulcio of its flags' defaults: CI still records
# the signature in the public Rekor log.
#
# The other way is to keep bundles and make every engine read them — Kyverno's ImageValidatingPolicy
# or a ClusterPolicy with `type: SigstoreBundle` (keys only from Kyverno 1.19), policy-controller's
# `signatureFormat: bundle` (keyless authorities only, and not yet for image signatures) — which
# neither the policies of notebooks 06 and 07 nor every engine version can. So the template signs
# in the classic format. The project's tests replay this step with the real cosign v3.1.3 against a
# lab: with the flags both policies admit the image, without them both deny it.

# %% [markdown]
# ## The workflow checks itself
#
# `labkit.ci_workflow.check_workflow` reads a workflow and reports, per step:
# - each action is pinned to a commit;
# - each `cosign sign` signs the build step's digest output, not a tag;
# - it signs in the classic format for the cosign the job installs: the installer's
#   `cosign-release`, else that installer release's default (v4 installs cosign v3); the flags count
#   on the command line or as cosign's `COSIGN_NEW_BUNDLE_FORMAT=false` / `COSIGN_USE_SIGNING_CONFIG=false`;
# - a build for another CPU than the runner's (arm64 on amd64) sets up QEMU first;
# - image names made from `github.repository` are lower-cased.
#
# Each failure says what to change. Your copy is the template, so everything passes:

# %%
check.ci_workflow()

# %% [markdown]
# ## The same pipeline, against the lab
#
# Each CI step, as a command you can run here. Build and push; the build prints `REF@DIGEST`, the
# equivalent of `steps.build.outputs.digest`:

# %%
image = f"{lab.registry.host}/workshop/ci-app"
pushed = workshop.run(f"labkit build hello-app -t {image}:commit-0001 --platform linux/amd64,linux/arm64/v8 --push")
DIGEST = pushed.stdout.strip().rsplit("@", 1)[1]

# %% [markdown]
# Sign `IMAGE@DIGEST` as the workflow's step does, with the real cosign when it is installed (else
# `labkit`, same flags; `--tlog-upload=false`: the lab is offline), then verify as a deploy gate
# would:

# %%
cosign = workshop.tool("cosign")
!{cosign} sign --key cosign.key --tlog-upload=false --recursive {image}@{DIGEST}
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog -o text {image}@{DIGEST}")

# %% [markdown]
# **What just happened.** Nothing between build and sign looked the tag up. Even if another pipeline
# pushed `commit-0001` again a second later, this job signed the bytes it built.

# %% [markdown]
# ## Exercise
#
# A colleague's workflow, `fix-me.yml` (the cell below writes it to your workshop directory), has
# two of the classic mistakes. Read what the check reports, open `workshop/fix-me.yml` in the file
# browser, fix both, save, and run the check again until it passes.

# %%
import re

broken = open("sign-by-digest.yml").read().replace('"${IMAGE}@${DIGEST}"', '"${IMAGE}:${{ github.sha }}"', 1)
broken = re.sub(r"(uses: actions/checkout)@[0-9a-f]{40}", r"\1@main", broken, count=1)
open("fix-me.yml", "w").write(broken)
for finding in check_workflow("fix-me.yml"):
    print("✓" if finding.ok else "✗", finding.what)

# %% solution
pinned = re.search(r"uses: actions/checkout@[0-9a-f]{40}", open("sign-by-digest.yml").read()).group(0)
fixed = open("fix-me.yml").read().replace('"${IMAGE}:${{ github.sha }}"', '"${IMAGE}@${DIGEST}"')
open("fix-me.yml", "w").write(fixed.replace("uses: actions/checkout@main", pinned))

# %%
check.exercise_09()

# %% [markdown]
# ## Key points
# - Sign the digest your build step reports (`steps.<id>.outputs.digest`), never a tag.
# - With cosign v3, sign with `--new-bundle-format=false --use-signing-config=false` while your
#   policies read the classic `.sig` format; pin the cosign release so it cannot change under you.
# - Build arm64 on amd64 with QEMU set up first; lower-case image names (`${GITHUB_REPOSITORY,,}`).
# - Pin actions by commit SHA; grant the token the least it needs.
# - Keys come from secrets (`env://`), or there is no key at all (keyless, OIDC + Fulcio + Rekor).
#
# Next: **10 · wrap-up and reset**.
