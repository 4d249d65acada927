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
workshop.run(f"labkit build hello-app -t {lab.registry.host}/workshop/unsigned:v1 --platform linux/arm64/v8 --push")

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
# **On the Kyverno that had the bug.** labkit's tests run this step on the real Kyverno v1.17.0,
# the last release before the fix. With the Secret `regcred` in the `kyverno` namespace and named
# in `credentials.secrets`, the pod was still refused, word for word as when no Secret exists at all:
# `admission webhook "ivpol.validate.kyverno.svc-fail" denied the request: Policy private-signed
# error: failed to evaluate policy: GET http://127.0.0.1:PORT/v2/private/hello/manifests/sha256:…:
# UNAUTHORIZED: authentication required`. 1.17.0 looked the name up with no namespace, found
# nothing, said nothing, and pulled anonymously; Kyverno 1.19.1, which this lab runs, admits the
# pod. If you see `UNAUTHORIZED` on a cluster running Kyverno 1.14.0–1.17.0 although the Secret is
# right, upgrade to 1.17.1 or later: no policy change fixes it. (To see it yourself:
# `tools/reference-tools.sh kyverno-v1.17.0`, then `LABKIT_NATIVE_KYVERNO=v1.17.0 labkit lab up --backend native`.)

# %% [markdown]
# ## Requiring an annotation: not with this policy
#
# ClusterPolicies (notebook 06) can require the `-a env=workshop` annotation you signed in notebook
# 03: an attestor entry's `annotations` is checked against the signed payload. The
# ImageValidatingPolicy's `cosign.annotations` looks alike but is checked against something else:
# Kyverno 1.19 compares it with the OCI annotations of the signature's *layer*
# (`dev.cosignproject.cosign/signature`, …), not with the payload, so `env: workshop` never
# matches and every image is denied. labkit's differential suite found this by asking the real
# Kyverno; if you need an annotation, use a ClusterPolicy or check the payload another way.

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
# Your team's second key, `team.key` (the P-384 key of notebook 01), signs releases too. The cell
# below pushes `workshop/team-signed:v1` and signs it with `team.key` only; the policy denies it.
# Open `workshop/ivp.yaml` in the file browser and make the policy accept either key:
#
# 1. add a second attestor, `name: team`, with the contents of `team.pub` under `cosign.key.data`
#    (copy the first attestor), and the same `ctlog` line;
# 2. a P-384 key signs SHA-384, and Kyverno verifies SHA-256 unless told: add
#    `hashAlgorithm: sha384` under the team attestor's `key:`;
# 3. name both in the validation: `verifyImageSignatures(image, [attestors.workshop, attestors.team])`
#    counts the attestors that verified, so `e > 0` accepts either.
#
# Save, try it in the playground, apply it (`!labkit lab apply -f ivp.yaml`) and run the check.

# %%
team_signed = workshop.run(f"labkit build hello-app -t {lab.registry.host}/workshop/team-signed:v1 --push").stdout.strip()
workshop.run(f"labkit sign --key team.key --tlog-upload=false {team_signed}")
print(lab.create(pod("team-signed", f"{lab.registry.pod_host}/workshop/team-signed:v1"), dry_run=True))

# %% solution
import yaml

policy = yaml.safe_load(open("ivp.yaml"))
team = {"name": "team", "cosign": {"key": {"data": open("team.pub").read(), "hashAlgorithm": "sha384"},
                                   "ctlog": {"insecureIgnoreTlog": True, "insecureIgnoreSCT": True}}}
policy["spec"]["attestors"].append(team)
rule = policy["spec"]["validations"][0]
rule["expression"] = rule["expression"].replace("[attestors.workshop]", "[attestors.workshop, attestors.team]")
yaml.safe_dump(policy, open("ivp.yaml", "w"), sort_keys=False)
print(lab.apply("ivp.yaml")[0])
print(lab.create(pod("team-signed", f"{lab.registry.pod_host}/workshop/team-signed:v1"), dry_run=True))

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
