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
from labkit.ci_workflow import TEMPLATE

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
shutil.copy(TEMPLATE, "sign-by-digest.yml")  # your copy; the original is labkit/samples/github-actions/
print("copied", TEMPLATE.name)

# %% [markdown]
# ## The workflow, line by line
#
# **Trigger and permissions.** It runs on pushes to `main`. `permissions: {}` takes every token
# permission away at the top; the job asks only for what it needs: read the code, write packages
# (push to ghcr.io). Keyless signing would add `id-token: write`.

# %%
print(workshop.numbered("sign-by-digest.yml", 3, 19))

# %% [markdown]
# **Pinned actions.** Each `uses:` names a full commit SHA, with the release as a comment. A tag like
# `@v7` can be moved to other code by whoever controls the action's repository — the tag-hijack story
# of notebook 00, one level up. `persist-credentials: false` keeps the token out of `.git/config`.

# %%
print(workshop.numbered("sign-by-digest.yml", 20, 30))

# %% [markdown]
# **Build and push.** The step has `id: build`, so later steps can read its outputs. It builds both
# platforms, pushes an index tagged with the commit SHA, and exposes the index **digest** as
# `steps.build.outputs.digest`.

# %%
print(workshop.numbered("sign-by-digest.yml", 31, 38))

# %% [markdown]
# **Sign the digest.** The digest arrives through `env:` — never pasted into `run:` as
# `${{ … }}`, which would let a crafted value become shell code — and `cosign sign` signs
# `IMAGE@DIGEST`, so it signs exactly what this job pushed even if the tag moves meanwhile.
# `--key env://COSIGN_PRIVATE_KEY` reads the key from an environment variable filled from a
# repository secret (the contents of `cosign.key`); `COSIGN_PASSWORD` opens it; GitHub masks both in
# logs. `--yes` answers cosign's upload prompt; in CI the signature *is* recorded in the public
# Rekor log, which is what makes it auditable. `--recursive` signs each platform too.

# %%
print(workshop.numbered("sign-by-digest.yml", 39, 50))

# %% [markdown]
# **Keyless.** Without a key, cosign asks GitHub for an OIDC token (`id-token: write`), gets a
# 10-minute certificate from Fulcio naming this workflow, signs, and records everything in Rekor.
# There is no secret to leak; verifiers and policies name the identity instead
# (`--certificate-identity …/.github/workflows/image.yml@refs/heads/main`,
# `--certificate-oidc-issuer https://token.actions.githubusercontent.com`).
#
# Note: cosign-installer v4 installs cosign v3, which stores signatures as Sigstore bundles
# attached with the OCI referrers API; policy engines reading only the legacy `sha256-….sig` tag
# (what this lab teaches) need `--new-bundle-format=false --use-signing-config=false`.

# %% [markdown]
# ## The workflow checks itself
#
# `labkit.ci_workflow.check_workflow` reads a workflow and reports, per step, whether each action is
# pinned and whether each `cosign sign` signs the build step's digest output:

# %%
check.ci_workflow()

# %% [markdown]
# ## The same pipeline, against the lab
#
# Each CI step, as a command you can run here. Build and push; the build prints `REF@DIGEST`, the
# equivalent of `steps.build.outputs.digest`:

# %%
image = f"{lab.registry.host}/workshop/ci-app"
pushed = workshop.run(f"labkit build hello-flask -t {image}:commit-0001 --platform linux/amd64,linux/arm64/v8 --push")
DIGEST = pushed.stdout.strip().rsplit("@", 1)[1]

# %% [markdown]
# Sign `IMAGE@DIGEST` (with `--tlog-upload=false`: the lab is offline), then verify as a deploy gate
# would:

# %%
workshop.run(f"labkit sign --key cosign.key --tlog-upload=false --recursive {image}@{DIGEST}")
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog -o text {image}@{DIGEST}")

# %% [markdown]
# **What just happened.** Nothing between build and sign looked the tag up. Even if another pipeline
# pushed `commit-0001` again a second later, this job signed the bytes it built.

# %% [markdown]
# ## Exercise
#
# Break your copy the classic way — sign `"${IMAGE}:${{ github.sha }}"` (a tag) — and run the check.
# Then put it back.

# %% solution
text = open("sign-by-digest.yml").read()
open("sign-by-digest.yml", "w").write(text.replace('"${IMAGE}@${DIGEST}"', '"${IMAGE}:${{ github.sha }}"', 1))
print(check.ci_workflow().missing[0].what)
open("sign-by-digest.yml", "w").write(text)
print(check.ci_workflow().passed)

# %% [markdown]
# ## Key points
# - Sign the digest your build step reports (`steps.<id>.outputs.digest`), never a tag.
# - Pin actions by commit SHA; grant the token the least it needs.
# - Keys come from secrets (`env://`), or there is no key at all (keyless, OIDC + Fulcio + Rekor).
#
# Next: **10 · wrap-up and reset**.
