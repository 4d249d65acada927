# %% [markdown]
# # 07 · Sigstore policy-controller `ClusterImagePolicy`
#
# **You will**
# - write a `ClusterImagePolicy` with a key authority,
# - see that policy-controller checks only namespaces that opt in,
# - meet its strictest default: an image **no** policy covers is denied,
# - use `mode: warn` to roll a policy out without breaking anyone.

# %%
from labkit import check, workshop
from labkit.lab import pod

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("07", lab)  # what this notebook uses from earlier ones; names the one to finish first
signed_image, unsigned_image = check.images_for(lab)

# %% [markdown]
# ## Step 0: only policy-controller this time
#
# Kyverno checks every namespace, so its policies from notebooks 05–06 would answer here too. List
# the lab's policies and remove Kyverno's (`kubectl delete clusterpolicy workshop-verify-images`),
# so every decision below is policy-controller's:

# %%
workshop.clear_policies(lab, "kyverno")

# %% [markdown]
# ## Step 1: the policy
#
# A `ClusterImagePolicy` (policy.sigstore.dev) lists image globs and *authorities*; an image matching
# a glob must satisfy every matching policy (each through at least one of its authorities). `**`
# matches across `/`. A key authority without `ctlog` skips the transparency log, as the lab needs.

# %%
workshop.write_policy("clusterimagepolicy", "cip.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, mode="enforce")
print(open("cip.yaml").read())
for result in lab.apply("cip.yaml"):
    print(result)

# %% [markdown]
# ## Step 2: namespaces opt in
#
# policy-controller's webhooks only see namespaces labelled `policy.sigstore.dev/include=true`. In a
# namespace without the label, **nothing is checked** — the unsigned image is admitted:

# %%
lab.label_namespace("secure", {})  # kubectl create namespace secure
print(lab.create(pod("unchecked", unsigned_image, namespace="secure")))

# %% [markdown]
# Opt the namespace in yourself (`kubectl label namespace secure policy.sigstore.dev/include=true`;
# `labkit lab label` takes the same arguments on every backend):

# %%
!labkit lab label secure policy.sigstore.dev/include=true
signed = lab.create(pod("signed", signed_image, namespace="secure"))
print(signed)
print("admitted:", signed.images[0])
print(lab.create(pod("unsigned", unsigned_image, namespace="secure")))

# %% [markdown]
# **What just happened.** policy-controller's mutating webhook resolved the tag to a digest (it
# verifies digests only); its validating webhook (`policy.sigstore.dev`) then checked the signature
# with the key authority. The unsigned image failed with cosign's reason, per container.

# %% [markdown]
# ## Step 3: no matching policy → denied
#
# In an opted-in namespace, an image that *no* ClusterImagePolicy covers is denied by default
# (`no-match-policy: deny` in policy-controller's config). Push the sample to a repository outside
# the glob and try it:

# %%
workshop.run(f"labkit build hello-app -t {lab.registry.host}/demo/hello:v1 --push", show=False)
print(lab.create(pod("uncovered", f"{lab.registry.pod_host}/demo/hello:v1", namespace="secure")))

# %% [markdown]
# ## Step 4: warn mode
#
# `spec.mode: warn` turns failures into warnings: the workload is admitted and `kubectl` prints a
# `Warning:` line. It is how a team finds out what a policy *would* block before enforcing it.

# %%
workshop.write_policy("clusterimagepolicy", "cip.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, mode="warn")
lab.apply("cip.yaml")
print(lab.create(pod("warned", unsigned_image, namespace="secure")))

# %% [markdown]
# ## Step 5: private registries use the pod's own pull Secret
#
# In notebook 05, Kyverno could not read a private registry with the pod's `imagePullSecrets`: it
# verifies with *its own* credentials. policy-controller does the opposite: it reads signatures with
# the credentials the kubelet would pull with — the pod's `imagePullSecrets` (and its
# ServiceAccount's), from the pod's namespace — so a private registry needs no extra set-up.
# Push and sign the sample there, and cover it with a second policy:

# %%
import yaml

private = lab.private_registry
private_image = workshop.push_private_sample(lab)
private_policy = yaml.safe_load(open("cip.yaml"))
private_policy["metadata"]["name"] = "private-images"
private_policy["spec"]["mode"] = "enforce"
private_policy["spec"]["images"] = [{"glob": f"{private.pod_host}/private/**"}]
print(lab.apply(private_policy)[0])

# %% [markdown]
# A pod without a pull Secret: policy-controller reads the registry anonymously, and is refused.

# %%
print(lab.create(pod("private-anonymous", private_image, namespace="secure")))

# %% [markdown]
# The same pod with `imagePullSecrets: [{name: regcred}]`, the Secret in its own namespace
# (`kubectl create secret docker-registry regcred -n secure …`):

# %%
lab.apply(private.pull_secret("regcred", "secure"))
private_pod = pod("private-hello", private_image, namespace="secure")
private_pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
print(lab.create(private_pod))

# %% [markdown]
# ## Checkpoint

# %%
check.cip(lab)

# %% [markdown]
# ## Exercise
#
# A second team starts deploying to namespace `team-b`. Make policy-controller guard it: put
# `cip.yaml` back in enforce mode (open `workshop/cip.yaml` in the file browser, set `mode: enforce`,
# save, `!labkit lab apply -f cip.yaml`), and opt `team-b` in, in the terminal or a `!` cell
# (`labkit lab label team-b policy.sigstore.dev/include=true`, as `kubectl label namespace`).
# Before you label it, what does policy-controller check in `team-b`? Then run the check.

# %%
lab.label_namespace("team-b", {})  # kubectl create namespace team-b

# %% solution
text = open("cip.yaml").read().replace("mode: warn", "mode: enforce")
open("cip.yaml", "w").write(text)
print(lab.apply("cip.yaml")[0])
print(lab.create(pod("before-opt-in", unsigned_image, namespace="team-b")))
!labkit lab label team-b policy.sigstore.dev/include=true

# %%
check.exercise_07(lab)

# %% [markdown]
# ## Key points
# - policy-controller checks only namespaces labelled `policy.sigstore.dev/include=true`.
# - There, every image must be covered by a policy and satisfy it; uncovered images are denied.
# - It verifies digests: tags are resolved by its mutating webhook first.
# - `mode: warn` admits with a warning: roll out first, enforce later.
# - policy-controller reads private registries with the pod's own `imagePullSecrets`; Kyverno uses
#   its own credentials (notebook 05).
#
# Next: **08 · the attack lab**.
