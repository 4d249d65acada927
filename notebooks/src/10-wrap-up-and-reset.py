# %% [markdown]
# # 10 · Wrap-up and reset
#
# **You will**
# - look back at the supply chain you built, in one picture,
# - reset the lab (policies, namespaces, secrets, signatures) and see what stays,
# - know where to go next: keyless signing, attestations, and policies for them.

# %%
from labkit import check, workshop

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("10", lab)  # what this notebook uses from earlier ones; names the one to finish first
image = check.image_ref(lab)

# %% [markdown]
# ## What you built
#
# | notebook | you did | the real command |
# |---|---|---|
# | 01 | a cosign key pair, an imported key, the public key | `cosign generate-key-pair`, `cosign import-key-pair`, `cosign public-key` |
# | 02 | a reproducible multi-arch image, pushed | `docker buildx build --platform … --push`, `crane digest` |
# | 03 | signed the image **by digest**, recursively | `cosign sign --key cosign.key --tlog-upload=false --recursive IMAGE@DIGEST` |
# | 04 | verified it, found its signature, read the `.sig` artifact | `cosign verify`, `cosign triangulate`, `cosign tree` |
# | 05 | a Kyverno ImageValidatingPolicy (CEL), and the private-registry credentials fix | `kubectl apply -f ivp.yaml` |
# | 06 | a Kyverno ClusterPolicy: digest mutation, Enforce vs Audit, policy reports | `kubectl get policyreports` |
# | 07 | a policy-controller ClusterImagePolicy: opt-in namespaces, no-match deny, warn | `kubectl label ns … policy.sigstore.dev/include=true` |
# | 08 | attacked your own supply chain: tag hijack, replayed and swapped signatures, name tricks, globs, bundles, fail-open | `crane cp`, `cosign sign --new-bundle-format` |
# | 09 | the same chain in a CI pipeline | `cosign sign --key env://… "$IMAGE@$DIGEST"` in GitHub Actions |
#
# Here is the image and everything attached to it, as `cosign tree` shows it, with what each
# signature vouches for (the supply-chain tree view):

# %%
from labkit import widgets

widgets.tree_view(image)

# %% [markdown]
# ## Reset the lab
#
# `labkit lab reset` (`lab.reset()`) removes what the exercises created in the "cluster" —
# policies, namespaces, Secrets — and every signature in the lab registries. It keeps the
# services running, your keys and your images, so a new group (or you, again) starts from
# notebook 03 with the same digests. On kind it is the same: policies and namespaces are deleted
# with kubectl, the cluster stays.

# %%
!labkit lab reset

# %% [markdown]
# **What just happened.** The image is still there, with the same digest, but nothing vouches for
# it any more: `verify` finds no signatures (cosign's exit code 10), and `tree` shows no artifacts.

# %%
workshop.run(f"labkit digest {image}")
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog {image}")
workshop.run(f"labkit tree {image}")

# %% [markdown]
# ## Checkpoint

# %%
check.reset(lab)

# %% [markdown]
# ## Exercise
#
# Prove to yourself that a reset loses nothing you need: sign the image again by digest and verify
# it, in the terminal or a `!` cell, using only the commands from notebooks 03 and 04. Then run the
# check.

# %% solution
digest = workshop.run(f"labkit digest {image}", show=False).stdout.strip()
signed = f"{image.rsplit(':', 1)[0]}@{digest}"
workshop.run(f"labkit sign --key cosign.key --tlog-upload=false --recursive {signed}")
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog {signed}")

# %%
check.exercise_10(lab)

# %% [markdown]
# ## Stopping, and resetting for the next group
#
# - `labkit lab down` (or Ctrl-C in the terminal running `make lab`) stops the lab. Images and keys
#   stay in `$LABKIT_HOME`; `make lab` brings it all back.
# - Trainers: `labkit lab reset` between groups; `rm -r $LABKIT_HOME/workshop` also removes the
#   learners' keys (they are made again in notebook 01). `docs/instructor-guide.md` has the details.
#
# ## Key points
# - Trust is a chain: a key you control → a signature on a **digest** → a policy that names your
#   public key → an admission decision. Break any link and the workload is refused.
# - Signatures live next to the image (`sha256-<digest>.sig`); deleting them revokes nothing
#   elsewhere, and a tag never carries trust.
# - Admission control is where trust is enforced: Kyverno and the policy-controller see the same
#   signature, with different defaults (Kyverno rewrites tags to digests; the policy-controller
#   checks only opted-in namespaces and denies images no policy covers).
#
# ## Where to go next
# - **Keyless signing**: `cosign sign` with an OIDC identity, a Fulcio certificate and a Rekor
#   entry — no key to lose; policies then name an issuer and subject instead of a key.
# - **Attestations** (`cosign attest`): signed SBOMs and provenance, checked by Kyverno's
#   `attestations` and policy-controller's `policy` blocks.
# - The Sigstore docs (docs.sigstore.dev), Kyverno's verifyImages and ImageValidatingPolicy docs,
#   and the policy-controller docs.
