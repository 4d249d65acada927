# %% [markdown]
# # 05 · Kyverno ImageValidatingPolicy
#
# **You will**
# - write a Kyverno `ImageValidatingPolicy` whose CEL rule calls `verifyImageSignatures`,
# - watch admission pin the signed image to its digest and deny an unsigned one,
# - edit the policy live in the playground and see the decision change,
# - hit the private-registry credentials trap, and fix it.

# %%
from labkit import check, widgets, workshop
from labkit.lab import pod

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("05", lab)  # what this notebook uses from earlier ones; names the one to finish first
signed_image, unsigned_image = check.images_for(lab)  # what pod specs name: the registry as the cluster sees it
print(signed_image)
print(unsigned_image)

# %% [markdown]
# The unsigned image is the sample's arm64 build pushed to its own repository. Its digest equals the
# signed arm64 image's — but signatures belong to a repository, so here it has none:

# %%
workshop.run(f"labkit build hello-flask -t {lab.registry.host}/workshop/unsigned:v1 --platform linux/arm64/v8 --push")

# %% [markdown]
# ## Step 1: the policy
#
# An `ImageValidatingPolicy` (Kyverno 1.14+, `policies.kyverno.io`) matches requests like a
# ValidatingAdmissionPolicy (`matchConstraints`), selects images (`matchImageReferences`) and decides
# with CEL. `verifyImageSignatures(image, [attestors.workshop])` returns how many attestors verified
# the image; the rule demands at least one for every container.

# %%
workshop.write_policy("imagevalidatingpolicy", "ivp.yaml", public_key="cosign.pub", registry=lab.registry.pod_host)
print(open("ivp.yaml").read())

# %% [markdown]
# The file is `workshop/ivp.yaml` in JupyterLab's file browser. Apply it as you would with
# `kubectl apply -f ivp.yaml`: `labkit lab apply -f` takes the same file on every backend (on the
# native and kind backends `kubectl` itself works too, in the terminal, with the lab's
# `KUBECONFIG`); from Python it is `lab.apply("ivp.yaml")`.

# %%
!labkit lab apply -f ivp.yaml

# %% [markdown]
# ## Step 2: admit the signed image, deny the unsigned one
#
# `kubectl run hello --image <image>` is `lab.create(pod("hello", <image>))`; the result prints what
# kubectl prints. The pod names the tag `v1`; admission decides which digest runs.

# %%
hello = lab.create(pod("hello", signed_image))
print(hello)
print("image after admission:", hello.images[0])

# %% [markdown]
# That digest is the index you signed by digest (`--recursive`) in notebook 03 — `crane digest` of the tag:

# %%
signed_digest = workshop.run(f"labkit digest {check.image_ref(lab)}").stdout.strip()
print("pinned to the signed digest:", hello.images[0].endswith(signed_digest))

# %%
print(lab.create(pod("unsigned", unsigned_image)))

# %% [markdown]
# **What just happened.** Kyverno reviewed each pod twice, as a cluster does. Its *mutating* webhook
# resolved the tag `v1` in the registry and pinned the container to `v1@sha256:…` (the policy's
# default `mutateDigest: true`), so the node will run exactly the digest that was verified. Its
# *validating* webhook (`ivpol.validate.kyverno.svc-fail`) ran the CEL rule: the unsigned image
# verified with 0 attestors, so the request was denied with the policy's message.

# %% [markdown]
# ## Step 3: the playground
#
# Edit the policy below — change the glob, break the key, switch `validationActions` to `[Audit]` —
# and pick an image; the decision and its trace update when the editor loses focus. Nothing is
# applied to the lab: this is `labkit policy test`. (The widget needs a live kernel; the decision
# for the policy as written is printed below it.)

# %%
playground = widgets.PolicyPlayground(open("ivp.yaml").read(), [unsigned_image, signed_image], lab=lab)
playground

# %%
print(playground.result.text)

# %% [markdown]
# ## Step 4: the private-registry credentials trap
#
# Kyverno verifies signatures **from its own pod**, with its own registry credentials. A private
# registry refuses it unless the policy names a pull Secret Kyverno can read. The lab has a second,
# password-protected registry; push and sign the sample there (`workshop.push_private_sample` does
# `docker login`, `docker push` and `cosign sign --key cosign.key` by digest):

# %%
private = lab.private_registry
private_image = workshop.push_private_sample(lab)
print("pushed and signed", private_image.split("/", 1)[1])

# %% [markdown]
# A policy for it **without credentials**, and a pod that even lists an `imagePullSecret` (which is
# what the *kubelet* uses to pull):

# %%
workshop.write_policy("imagevalidatingpolicy-private", "ivp-private.yaml", public_key="cosign.pub",
                      registry=private.pod_host, credentials="")
lab.apply("ivp-private.yaml")
lab.apply(private.pull_secret("regcred", "default"))
private_pod = pod("private-hello", private_image)
private_pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
print(lab.create(private_pod))

# %% [markdown]
# **The trap.** The signature is fine; Kyverno could not *read* it. An ImageValidatingPolicy never
# uses the pod's `imagePullSecrets` (Kyverno issue #17080), and Kyverno 1.14.0–1.17.0 also looked up
# `credentials.secrets` without a namespace, found nothing and pulled anonymously (#15120, fixed in
# 1.17.1) — the same `UNAUTHORIZED` even with the policy right. **The fix**: put the Secret in the
# Kyverno namespace and name it in `credentials.secrets`
# (`kubectl create secret docker-registry regcred -n kyverno …`):

# %%
workshop.write_policy("imagevalidatingpolicy-private", "ivp-private.yaml", public_key="cosign.pub",
                      registry=private.pod_host, credentials="  credentials:\n    secrets: [regcred]")
lab.apply("ivp-private.yaml")
lab.apply(private.pull_secret("regcred", "kyverno"))
print(lab.create(private_pod))

# %% [markdown]
# ## failurePolicy: what happens when Kyverno cannot answer
#
# The policy above leaves `failurePolicy` at its default, `Fail`: if Kyverno cannot decide in time
# (a registry that hangs, a Kyverno pod that is down), the API server refuses the pod. The seed
# policy this workshop grew from said `failurePolicy: Ignore`, which lets the same pod in
# **unchecked**. Notebook 08 (attack 8) shows it failing open against a registry that never
# answers, then closes it with `Fail`.

# %% [markdown]
# ## Checkpoint

# %%
check.ivp(lab)

# %% [markdown]
# ## Exercise
#
# Require the annotation you signed in notebook 03: open `workshop/ivp.yaml` in the file browser and
# change the attestor so only signatures carrying `env: workshop` count (a cosign attestor takes
# `annotations`, a map, beside `ctlog`). Save, try the decision in the playground (step 3) or with
# `widgets.playground_decision`, then apply the file (`!labkit lab apply -f ivp.yaml`) and run the
# check. What does the playground say for `env: prod`?

# %% solution
text = open("ivp.yaml").read().replace(
    "        ctlog: {insecureIgnoreTlog: true, insecureIgnoreSCT: true}",
    "        ctlog: {insecureIgnoreTlog: true, insecureIgnoreSCT: true}\n        annotations:\n          env: workshop")
reach = (lab.registry.pod_host, lab.registry.host)  # decide from this machine, as pods name the registry
print(widgets.playground_decision(text, signed_image, reach=reach).text.splitlines()[0])
print(widgets.playground_decision(text.replace("env: workshop", "env: prod"), signed_image, reach=reach).text.splitlines()[0])
open("ivp.yaml", "w").write(text)
print(lab.apply("ivp.yaml")[0])

# %%
check.exercise_05(lab)

# %% [markdown]
# ## Key points
# - An ImageValidatingPolicy decides with CEL; `verifyImageSignatures` counts the attestors that verify.
# - Kyverno pins tags to the verified digest (`mutateDigest`), then validates.
# - Kyverno pulls signatures with **its** credentials: `credentials.secrets`, Secrets in the Kyverno
#   namespace — not the pod's `imagePullSecrets`.
#
# Next: **06 · Kyverno ClusterPolicy verifyImages**.
