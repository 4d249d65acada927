# %% [markdown]
# # 04 · Verify, triangulate, tree
#
# **You will**
# - verify the image with your public key and read cosign's output,
# - meet the three ways verification fails, with cosign's exit codes,
# - find where signatures live (`triangulate`), list them (`tree`), and take a `.sig` artifact apart.

# %%
from labkit import check, workshop

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("04", lab)  # what this notebook uses from earlier ones; names the one to finish first
image = check.image_ref(lab)
repository = image.rsplit(":", 1)[0]
digest = workshop.run(f"labkit digest {image}", show=False).stdout.strip()
signed_ref = f"{repository}@{digest}"

# %% [markdown]
# ## Step 1: verify
#
# `verify` needs only the **public** key. `--insecure-ignore-tlog` says "I accept a signature no
# transparency log has witnessed" — true of every lab signature (notebook 03). cosign prints the
# checks it made on stderr, and the verified payloads as JSON on stdout. Run it as you would in a
# terminal, with the real cosign when it is installed (else `labkit`, same flags, same output):

# %%
cosign = workshop.tool("cosign")
!{cosign} verify --key cosign.pub --insecure-ignore-tlog {signed_ref}

# %% [markdown]
# **What just happened.** For every signature in `sha256-<digest>.sig`, the signature was checked
# against the payload with `cosign.pub`, and the payload's `docker-manifest-digest` was compared with
# the digest being verified (the "cosign claims"). The annotation you signed in notebook 03 is in
# `optional`; `-a` makes it a requirement:

# %%
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog -a env=workshop -o text {signed_ref}")

# %% [markdown]
# ## Step 2: how verification fails
#
# cosign has distinct exit codes for distinct failures; scripts and CI gates rely on them.
#
# **No signatures (exit 10).** The arm64 image you pushed as `workshop/tag-demo` in notebook 00 has
# the *same digest* as the signed arm64 image here — but signatures are stored per repository, and
# nothing was signed in `tag-demo`:

# %%
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog {lab.registry.host}/workshop/tag-demo:latest")

# %% [markdown]
# **The tag does not exist (exit 11):**

# %%
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog {repository}:v2")

# %% [markdown]
# **No signature matches the key (exit 12).** A key nobody signed with:

# %%
workshop.run("labkit generate-key-pair --output-key-prefix stranger --force", show=False)
workshop.run(f"labkit verify --key stranger.pub --insecure-ignore-tlog {signed_ref}")

# %% [markdown]
# A required annotation that was not signed fails the same way:

# %%
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog -a env=prod {signed_ref}")

# %% [markdown]
# ## Step 3: where signatures live
#
# `triangulate` prints the reference cosign reads signatures from: the image's repository, tag
# `sha256-<digest>.sig`. `tree` lists what is attached there.

# %%
workshop.run(f"labkit triangulate {image}")
workshop.run(f"labkit tree {image}")

# %% [markdown]
# ## Step 4: anatomy of a `.sig` artifact
#
# The signature is an ordinary OCI image: a manifest, a small config, and one layer per signature.
# Each layer *is* a payload (the JSON below), and its annotation
# `dev.cosignproject.cosign/signature` holds the base64 ECDSA signature of exactly those bytes.
# Registries need no special support, which is why this "tag schema" works everywhere.

# %%
print(workshop.describe_signature_artifact(signed_ref))

# %% [markdown]
# The payload is cosign's *simple signing* format: `critical.image.docker-manifest-digest` is what
# makes a signature valid for one digest only (copy it to another digest's `.sig` and verification
# fails with `invalid or missing digest in claim`), `critical.identity.docker-reference` records the
# repository, and `optional` holds your annotations.

# %% [markdown]
# ## Try it: the sign/verify panel
#
# Pick a key, paste any image reference from this notebook, and press Verify (or Sign): the panel
# runs the same `labkit` commands and shows cosign's output.

# %%
from labkit import widgets

widgets.SignVerifyPanel(signed_ref)

# %% [markdown]
# ## Checkpoint

# %%
check.signed(lab)

# %% [markdown]
# ## Exercise
#
# Verify the **arm64 platform image** by its own digest (not the index). Which command gives you its
# digest, and why does verification succeed? Put the digest you verified in `arm64` and run the check.

# %%
arm64 = "sha256:…"  # your answer

# %% solution
from labkit.oci.client import RegistryClient

with RegistryClient() as client:
    index = client.get_manifest(signed_ref).parsed()
arm64 = next(d.digest for d in index.manifests if d.platform and d.platform.architecture == "arm64")
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog -o text {repository}@{arm64}")
# It succeeds because notebook 03 signed with --recursive: every platform manifest got its own signature.

# %%
check.exercise_04(lab, arm64)

# %% [markdown]
# ## Key points
# - `verify` checks each signature with the public key, then the claims: the signed digest must be the
#   verified digest. Exit codes: 10 no signatures, 11 no such tag, 12 no signature matches.
# - Signatures live per repository, at `sha256-<digest>.sig` (`triangulate` shows where).
# - A `.sig` artifact is a plain OCI image whose layers are the signed payloads.
#
# Next: **05 · Kyverno ImageValidatingPolicy**.
