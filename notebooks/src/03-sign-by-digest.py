# %% [markdown]
# # 03 · Sign by digest
#
# **You will**
# - see why cosign warns when you sign a tag,
# - sign the image by digest with your key, recursively (the index and each platform image),
# - learn what `--tlog-upload=false` turns off: the Rekor transparency log entry.

# %%
from labkit import check, workshop

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("03", lab)  # what this notebook uses from earlier ones; names the one to finish first
image = check.image_ref(lab)
repository = image.rsplit(":", 1)[0]
digest = workshop.run(f"labkit digest {image}").stdout.strip()
signed_ref = f"{repository}@{digest}"

# %% [markdown]
# ## Why not sign a tag?
#
# `cosign sign IMAGE:TAG` resolves the tag and signs whatever digest it points to *at that
# moment*. Between your `docker push` and your `cosign sign`, someone else's push can move the tag:
# you would sign their image. cosign therefore warns. Here is that warning, on a throwaway copy of
# the image in a side repository (so your real image stays clean):

# %%
side = f"{lab.registry.host}/workshop/side:v1"
workshop.run(f"labkit build hello-app -t {side} --push", show=False)
workshop.run(f"labkit sign --key cosign.key --tlog-upload=false {side}")

# %% [markdown]
# The fix is simple: take the digest from the build (notebook 02 printed it) and sign `REPO@DIGEST`.
# A digest cannot move.

# %% [markdown]
# ## Step 1: sign by digest, recursively
#
# `--recursive` signs the index **and** every platform manifest in it, so whatever a node pulls
# (the index, or its platform's image by digest) carries a signature. `-a env=workshop` adds an
# annotation to the signed payload; verifiers and policies can require it.
#
# This is the step that matters, so type it as you would in a terminal: with the real cosign
# when it is installed (`workshop.tool("cosign")`, else `labkit`, which takes the same flags and
# writes the same artifacts; the checkpoint accepts either).

# %%
cosign = workshop.tool("cosign")
!{cosign} sign --key cosign.key --tlog-upload=false --recursive -a env=workshop {signed_ref}

# %% [markdown]
# **What just happened.** For each of the three digests, labkit (like cosign) built a small JSON
# *payload* naming the digest, signed it with your private key, and pushed it as an OCI artifact
# tagged `sha256-<digest>.sig` in the same repository. Nothing else was changed: the image, its
# tag and its digest are untouched. Notebook 04 takes that artifact apart.

# %% [markdown]
# ## What `--tlog-upload=false` turned off
#
# By default, `cosign sign` also uploads an entry to **Rekor**, Sigstore's public transparency log:
# the payload's hash, the signature and your public key (or, for keyless signing, your
# certificate), in an append-only, publicly auditable log. Anyone can then check *when* a
# signature was made and that it was not back-dated, and you can monitor the log for signatures
# made with your key that you did not make.
#
# The lab runs offline, so nothing is uploaded: labkit behaves exactly as
# `cosign sign --tlog-upload=false`, and verifiers must say `--insecure-ignore-tlog` (notebook 04).
# Without the flag, labkit explains this and signs anyway:

# %%
workshop.run(f"labkit sign --key cosign.key {repository}@{digest} --upload=false")

# %% [markdown]
# (`--upload=false` signs without pushing: nothing was added to the registry.)

# %% [markdown]
# ## Checkpoint

# %%
check.signed(lab)

# %% [markdown]
# ## Exercise
#
# Sign the index a second time, by digest, with the key you imported in notebook 01 (`team.key`),
# in a cell or in the terminal. How many signatures does the index have now? (`labkit tree` shows
# them; notebook 04 explains the output.) Then run the check.

# %% solution
workshop.run(f"labkit sign --key team.key --tlog-upload=false {signed_ref}")
workshop.run(f"labkit tree {signed_ref}")

# %%
check.exercise_03(lab)

# %% [markdown]
# ## Key points
# - Sign digests, not tags: a tag can move between push and sign.
# - `--recursive` signs an index and each platform manifest it lists.
# - A signature is an OCI artifact next to the image, tagged `sha256-<digest>.sig`.
# - Outside the lab, keep the transparency log on: it makes signatures auditable.
#
# Next: **04 · verify, triangulate, tree**.
