# %% [markdown]
# # 05 · Kyverno ImageValidatingPolicy
#
# **You will**
# - write a Kyverno `ImageValidatingPolicy` whose CEL rule calls `verifyImageSignatures`,
# - watch admission pin the signed image to its digest and deny an unsigned one,
# - edit the policy live in the playground and see the decision change,
# - hit the private-registry credentials trap, and fix it.

# %%
import os

from labkit import check, widgets, workshop
from labkit.lab import pod

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
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
# `kubectl apply -f ivp.yaml` is `lab.apply("ivp.yaml")`:

# %%
for result in lab.apply("ivp.yaml"):
    print(result)

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
# password-protected registry; push and sign the sample there (`docker login` + `cosign sign`):

# %%
from labkit.oci.build import build_image
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from labkit import keys

private = lab.private_registry
with RegistryClient(credentials=private.credentials()) as client:  # docker login, then push
    digest = client.push_image(f"{private.host}/private/hello:v1", build_image("hello-flask"))
    sign_image(f"{private.host}/private/hello@{digest}",
               keys.load_private_key("cosign.key", os.environ["COSIGN_PASSWORD"].encode()), client=client)
private_image = f"{private.pod_host}/private/hello@{digest}"
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
# ## Checkpoint

# %%
check.ivp(lab)

# %% [markdown]
# ## Exercise
#
# Require the annotation you signed in notebook 03: change the attestor so only signatures carrying
# `env: workshop` count (cosign attestors take `annotations`), and check the decision with
# `widgets.playground_decision` before applying it.

# %% solution
text = open("ivp.yaml").read().replace(
    "        ctlog: {insecureIgnoreTlog: true, insecureIgnoreSCT: true}",
    "        ctlog: {insecureIgnoreTlog: true, insecureIgnoreSCT: true}\n        annotations:\n          env: workshop")
reach = (lab.registry.pod_host, lab.registry.host)  # decide from this machine, as pods name the registry
print(widgets.playground_decision(text, signed_image, reach=reach).text.splitlines()[0])
print(widgets.playground_decision(text.replace("env: workshop", "env: prod"), signed_image, reach=reach).text.splitlines()[0])

# %% [markdown]
# ## Key points
# - An ImageValidatingPolicy decides with CEL; `verifyImageSignatures` counts the attestors that verify.
# - Kyverno pins tags to the verified digest (`mutateDigest`), then validates.
# - Kyverno pulls signatures with **its** credentials: `credentials.secrets`, Secrets in the Kyverno
#   namespace — not the pod's `imagePullSecrets`.
#
# Next: **06 · Kyverno ClusterPolicy verifyImages**.
