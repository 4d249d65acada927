# %% [markdown]
# # 02 · Build and push
#
# **You will**
# - build the sample app into a multi-platform image (amd64 and arm64) and push it to the lab registry,
# - see why the digest is the same on every machine (reproducible builds),
# - tell an index digest from each platform's digest, and resolve tags with `digest`.

# %%
import json

from labkit import check, workshop
from labkit.oci.client import RegistryClient

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("02", lab)  # what this notebook uses from earlier ones; names the one to finish first
workshop.copy_sample()
image = check.image_ref(lab)  # {registry}/workshop/hello:v1
print(image)

# %% [markdown]
# ## Step 1: build and push
#
# `labkit build` takes `docker buildx build`'s flags. It runs no containers: it packs the files the
# Dockerfile `COPY`s into one layer and writes the image config from `WORKDIR`, `ENV`, `EXPOSE` and
# `CMD`. On this lab it does not pull `FROM` (it says so): the image is the app layer alone, as
# nothing here runs it. On the kind lab, whose pods do run it, it puts that layer on the `FROM`
# image, pinned by digest. Two platforms give an **image index**: one manifest per platform, and a
# list pointing at both.

# %%
pushed = workshop.run(f"labkit build hello-app -t {image} --platform linux/amd64,linux/arm64/v8 --push")

# %% [markdown]
# **What just happened.** The last line is `REPOSITORY@DIGEST`: the digest of the index, the
# SHA-256 of its manifest bytes. Everyone in the room who built the same sources has the same
# digest, because `labkit build` fixes everything that usually varies:
#
# - file times come from `SOURCE_DATE_EPOCH` (0 unless set), not from your checkout;
# - tar entries are sorted, with fixed owners (0:0, no names) and modes (0644/0755); gzip writes
#   no timestamp or file name, at a fixed level;
# - the config's `created` time is that same epoch; nothing is run (the sample has no `RUN`), and
#   the only download, the kind lab's `FROM`, is named by digest.
#
# So a digest is a name for *content*: build it twice with labkit, anywhere, and you get the same one.
#
# **`docker buildx build` is not reproducible by default**, although it takes the same flags (the
# `real tool` line above). Run twice on this directory, it gives two digests: file times come from
# your checkout, the config's `created` and history record the build's clock, a `RUN pip install`
# fetches what PyPI serves that day, and `FROM python:3.12-slim` without a digest is a tag that
# moves. BuildKit gets the same property only when you ask for it:
#
# - `SOURCE_DATE_EPOCH` set (buildx 0.10 and later pass the variable on as the build argument) fixes
#   `created` and the history times;
# - `--output type=image,name=IMAGE,push=true,rewrite-timestamp=true` (BuildKit 0.13 and later)
#   rewrites the file times in the layers to that epoch;
# - the base pinned by digest (`FROM python:3.12-slim@sha256:…`, as the sample's Dockerfile does)
#   and any installed packages pinned;
# - `--provenance=false`: the provenance attestation buildx attaches by default records when the
#   build ran, so the index digest differs on every build even when each platform's digest does not.

# %%
again = workshop.run("labkit build hello-app -t example.invalid/workshop/hello:v1 --platform linux/amd64,linux/arm64/v8")
print("same digest without pushing:", pushed.stdout.strip().endswith(again.stdout.strip()))

# %% [markdown]
# ## Step 2: digests vs tags
#
# A tag resolves to a digest *at the moment you ask*. `labkit digest` is `crane digest`:

# %%
index_digest = workshop.run(f"labkit digest {image}").stdout.strip()

# %% [markdown]
# That digest is the SHA-256 of the index manifest, which the registry serves as JSON
# (`crane manifest IMAGE | jq .` shows the same). It lists one manifest per platform, each with its
# own digest. A node pulls the index, picks its platform's entry, and pulls that manifest by digest
# — so every hop is content-addressed:

# %%
with RegistryClient() as client:
    fetched = client.get_manifest(image)
index = json.loads(fetched.data)
print("Content-Type:", fetched.media_type)
print(json.dumps(index, indent=2))

# %% [markdown]
# Each platform digest resolves on its own too (`crane digest REPO@DIGEST` prints it back), and the
# repository keeps all three manifests. Ask with the real `crane` when it is installed (`labkit`
# otherwise, same flags), as you would in JupyterLab's terminal:

# %%
repository = image.rsplit(":", 1)[0]
platform_digest = index["manifests"][1]["digest"]
crane = workshop.tool("crane")
!{crane} digest {repository}@{platform_digest}

# %% [markdown]
# ## Checkpoint

# %%
check.image(lab)

# %% [markdown]
# ## Exercise
#
# Open `workshop/hello-app/app.py` in JupyterLab's file browser and change one character. Build
# it for the same two platforms and push it as `workshop/exercise-02:changed`, then compare its
# digest with `index_digest`. Change the file back (undo, save) and build again without pushing:
# which digest do you expect now? The check wants the changed image pushed and `app.py` restored.

# %% solution
app = "hello-app/app.py"
original = open(app).read()
with open(app, "w") as fh:
    fh.write(original.replace("Hello", "Hallo", 1))
changed = workshop.run(f"labkit build hello-app -t {lab.registry.host}/workshop/exercise-02:changed "
                       "--platform linux/amd64,linux/arm64/v8 --push", show=False)
with open(app, "w") as fh:
    fh.write(original)
restored = workshop.run(f"labkit build hello-app -t {image} --platform linux/amd64,linux/arm64/v8", show=False)
print("changed app, same digest? ", changed.stdout.strip().endswith(index_digest))
print("restored app, same digest?", restored.stdout.strip() == index_digest)

# %%
check.exercise_02(lab)

# %% [markdown]
# ## Key points
# - An image is a manifest (config + layers); a multi-platform image is an index of manifests.
#   Each is named by the SHA-256 of its bytes.
# - Reproducible builds make digests portable: the same sources give the same digest everywhere.
# - Tags are pointers you look up; digests are what you sign and deploy.
#
# Next: **03 · sign by digest**.
