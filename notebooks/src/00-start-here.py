# %% [markdown]
# # 00 · Start here: why image trust matters
#
# **You will**
# - see how a tag can be moved under you (the tag-hijack story),
# - learn the three ideas this workshop builds on: *digests*, *signatures*, *admission control*,
# - start the lab every later notebook uses.
#
# Every step shows the `labkit` call next to the real tool's command (`cosign`, `crane`,
# `kubectl`) and prints exactly what that tool would print.

# %% [markdown]
# ## The tag-hijack story
#
# Monday: your team deploys `registry.example/shop/web:1.4`. Tuesday: someone with push rights
# (a leaked CI token, a compromised laptop) pushes a different image **under the same tag**.
# Wednesday: a node restarts a pod, pulls `:1.4` again, and runs the attacker's code. Nothing in
# the YAML changed; nobody approved anything.
#
# A tag is a *name that can move*. A **digest** (`sha256:…`) is the hash of the image manifest:
# change one byte of the image and the digest changes. Signing a digest says *"I vouch for exactly
# these bytes"*; admission control then refuses, at the cluster's front door, any image nobody
# vouched for.
#
# You will play both sides: push, move a tag, sign by digest, and watch Kyverno and the Sigstore
# policy-controller admit or refuse workloads.

# %% [markdown]
# ## Start the lab
#
# The **embedded** lab (the default) needs no Docker and no internet: an OCI registry and an HTTPS
# admission webhook run on loopback, and the webhook answers real `AdmissionReview`s with labkit's
# own implementation of Kyverno's and the policy-controller's rules, held case by case to the real
# engines by labkit's tests. With `LAB_BACKEND=native` the real kube-apiserver, Kyverno and
# policy-controller decide (as local processes); with `LAB_BACKEND=kind` a real kind cluster does.
# Notebooks do not change.

# %%
import os

import labkit

lab = labkit.Lab.start(backend=os.environ.get("LAB_BACKEND", "embedded"))
print("backend: ", lab.backend)
print("registry:", lab.registry.host, "(push here)")
print("pods see:", lab.registry.pod_host)

# %% [markdown]
# `Lab.start()` is idempotent: it returns the running lab if there is one, so every notebook
# starts with it (from 02 on as `lab = workshop.start()`, which also moves to the workshop
# directory and sets the key password). The terminal equivalent is `labkit lab up`; `labkit lab status` reports health:

# %%
from labkit import workshop

workshop.run("labkit lab status")

# %% [markdown]
# ## Watch a tag move
#
# Push two different images under one tag and ask the registry what the tag points to each time.
# `labkit build` takes `docker buildx build`'s flags but runs no containers: it packs the files
# the Dockerfile `COPY`s into one layer, reproducibly (it says what it left out).
# `labkit digest` is `crane digest`: it resolves a reference to the manifest digest.

# %%
os.chdir(workshop.workdir())      # your files live in $LABKIT_HOME/workshop
workshop.copy_sample()             # the sample app, as hello-app/
demo = f"{lab.registry.host}/workshop/tag-demo:latest"
first = workshop.run(f"labkit build hello-app -t {demo} --push")
workshop.run(f"labkit build hello-app -t {demo} --platform linux/arm64/v8 --push")

# %% [markdown]
# Now ask the registry yourself, with the real tool. A line starting with `!` runs in a shell, as
# in JupyterLab's terminal (File → New → Terminal), where `labkit`, and `crane` and `cosign` when
# they are installed, are on the PATH. `workshop.tool("crane")` is `crane` when it is installed and
# `labkit` otherwise: `labkit digest` takes `crane digest`'s flags and prints what it prints.

# %%
crane = workshop.tool("crane")
!{crane} digest {demo}

# %% [markdown]
# **What just happened.** Both pushes used the tag `latest`; the second replaced the first. Anyone
# deploying `tag-demo:latest` now gets the arm64 image, and nothing in their YAML tells them.
# The first image is still there, reachable by its digest only:

# %%
first_digest = first.stdout.strip().split("@")[1]
workshop.run(f"labkit digest {demo.rsplit(':', 1)[0]}@{first_digest}")

# %% [markdown]
# ## Checkpoint
#
# Each notebook ends its main part with a checkpoint: it looks at your real state and says
# precisely what is missing. This one checks the lab answers.

# %%
from labkit import check

check.lab_running(lab)

# %% [markdown]
# ## Exercise
#
# Build the sample again (default platform) and push it under a tag of your own,
# `workshop/tag-demo:mine`, in a cell or in the terminal. Print its digest: is it the same as
# `first_digest`? Why? Then run the check below.

# %% solution
mine = workshop.run(f"labkit build hello-app -t {lab.registry.host}/workshop/tag-demo:mine --push")
print("same digest as the first push:", mine.stdout.strip().endswith(first_digest))
# Same bytes, same digest: the build is reproducible, and a digest names content, not a place.

# %%
check.exercise_00(lab)

# %% [markdown]
# ## Key points
# - A tag is a movable name; a digest names exact bytes.
# - Sign digests, deploy digests, and let admission control refuse what nobody signed.
# - The lab runs on loopback (embedded) or on kind; notebooks talk to one `Lab` interface.
#
# Next: **01 · keys**.
