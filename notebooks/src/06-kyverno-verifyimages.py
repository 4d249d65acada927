# %% [markdown]
# # 06 · Kyverno ClusterPolicy `verifyImages`
#
# **You will**
# - write the classic Kyverno `ClusterPolicy` with a `verifyImages` rule,
# - see Kyverno rewrite a tag to the digest it verified (`mutateDigest`),
# - switch from Enforce to Audit, and read the PolicyReports as a table and a chart.

# %%
import os

import labkit
from labkit import check, widgets, workshop
from labkit.lab import pod

lab = labkit.Lab.start(backend=os.environ.get("LAB_BACKEND", "embedded"))
os.chdir(workshop.workdir())
workshop.use_password()
signed_image, unsigned_image = check.images_for(lab)

# %% [markdown]
# ## Step 0: one policy at a time
#
# Notebook 05's ImageValidatingPolicies are still in the lab; they would answer first. Remove them,
# as `kubectl delete -f ivp.yaml -f ivp-private.yaml` would:

# %%
for name in ("ivp.yaml", "ivp-private.yaml"):
    for result in lab.delete(name):
        print(result)

# %% [markdown]
# ## Step 1: the policy, in Enforce mode
#
# `verifyImages` is a rule type of Kyverno's `ClusterPolicy` (kyverno.io/v1). Its attestor holds your
# public key; `failureAction: Enforce` denies what fails, and `mutateDigest: true` (the default)
# rewrites tags to the digest Kyverno verified.

# %%
workshop.write_policy("clusterpolicy", "clusterpolicy.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, action="Enforce", mutate_digest="true")
print(open("clusterpolicy.yaml").read())
for result in lab.apply("clusterpolicy.yaml"):
    print(result)

# %% [markdown]
# ## Step 2: digest mutation
#
# Create a pod **by tag**. Kyverno's mutating webhook verifies the signature of whatever `v1` points to
# now, then pins the pod to that digest: if someone moves the tag later, this pod still runs what
# was verified.

# %%
web = lab.create(pod("web", signed_image))
print(web)
print("requested:", signed_image)
print("admitted: ", web.images[0])
print("webhooks: ", ", ".join(web.webhooks))

# %% [markdown]
# ## Step 3: Enforce denies the unsigned image

# %%
print(lab.create(pod("web-unsigned", unsigned_image)))

# %% [markdown]
# **What just happened.** The denial came from Kyverno's *mutating* webhook
# (`mutate.kyverno.svc-fail`): for `verifyImages`, Kyverno verifies while mutating, then its
# validating webhook checks that the image was verified. The message lists the policy, the rule, and
# cosign's own reason.

# %% [markdown]
# ## Step 4: Audit mode and policy reports
#
# Audit admits everything and records failures in **PolicyReports** instead — how teams roll a policy
# out before enforcing it. Kyverno refuses Audit together with `mutateDigest: true` (a rewrite that
# cannot be enforced); try it:

# %%
workshop.write_policy("clusterpolicy", "clusterpolicy.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, action="Audit", mutate_digest="true")
for result in lab.apply("clusterpolicy.yaml"):
    print(result)

# %% [markdown]
# With `mutateDigest: false` it is accepted; the unsigned pod is now admitted, and reported:

# %%
workshop.write_policy("clusterpolicy", "clusterpolicy.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, action="Audit", mutate_digest="false")
for result in lab.apply("clusterpolicy.yaml"):
    print(result)
print(lab.create(pod("audited-unsigned", unsigned_image)))
print(lab.create(pod("audited-signed", signed_image)))

# %% [markdown]
# `kubectl get policyreports -o wide`, as a table:

# %%
reports = lab.reports()
widgets.report_table(reports)

# %% [markdown]
# and as a chart (results per policy):

# %%
widgets.report_chart(reports)

# %%
from labkit.admission.reports import result_counts

print(result_counts(reports))

# %% [markdown]
# ## Checkpoint

# %%
check.verify_images(lab)

# %% [markdown]
# ## Exercise
#
# Put the policy back in Enforce mode (with digest mutation) and show that the unsigned pod is denied
# again while the signed one is pinned.

# %% solution
workshop.write_policy("clusterpolicy", "clusterpolicy.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, action="Enforce", mutate_digest="true")
lab.apply("clusterpolicy.yaml")
print(lab.create(pod("again-unsigned", unsigned_image)))
print(lab.create(pod("again-signed", signed_image)).images[0])

# %% [markdown]
# ## Key points
# - `verifyImages` verifies in Kyverno's mutating webhook and pins tags to verified digests.
# - Enforce denies; Audit admits and reports — and needs `mutateDigest: false`.
# - PolicyReports (`wgpolicyk8s.io/v1alpha2`) hold the audit trail, one per resource.
#
# Next: **07 · policy-controller ClusterImagePolicy**.
