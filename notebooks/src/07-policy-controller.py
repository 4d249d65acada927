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
# Opt the namespace in (`kubectl label namespace secure policy.sigstore.dev/include=true`):

# %%
workshop.run("labkit lab label secure policy.sigstore.dev/include=true")
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
workshop.run(f"labkit build hello-flask -t {lab.registry.host}/demo/hello:v1 --push", show=False)
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
# ## Checkpoint

# %%
check.cip(lab)

# %% [markdown]
# ## Exercise
#
# Opt the namespace out again (remove the label: `kubectl label namespace secure
# policy.sigstore.dev/include-`) and show that policy-controller no longer checks anything there —
# not even the image no policy covers.

# %% solution
workshop.run("labkit lab label secure policy.sigstore.dev/include-")
print(lab.create(pod("uncovered-again", f"{lab.registry.pod_host}/demo/hello:v1", namespace="secure")))
workshop.run("labkit lab label secure policy.sigstore.dev/include=true")  # back, for the checkpoint

# %% [markdown]
# ## Key points
# - policy-controller checks only namespaces labelled `policy.sigstore.dev/include=true`.
# - There, every image must be covered by a policy and satisfy it; uncovered images are denied.
# - It verifies digests: tags are resolved by its mutating webhook first.
# - `mode: warn` admits with a warning: roll out first, enforce later.
#
# Next: **08 · the attack lab**.
