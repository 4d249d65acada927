# %% [markdown]
# # 06 · Kyverno ClusterPolicy `verifyImages`
#
# **You will**
# - write the classic Kyverno `ClusterPolicy` with a `verifyImages` rule,
# - see Kyverno rewrite a tag to the digest it verified (`mutateDigest`),
# - switch from Enforce to Audit, and read the PolicyReports as a table and a chart.

# %%
from labkit import check, widgets, workshop
from labkit.lab import pod

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
signed_image, unsigned_image = check.images_for(lab)

# %% [markdown]
# ## Step 0: one policy at a time
#
# Policies from earlier notebooks are still in the lab
# (`kubectl get clusterpolicies,imagevalidatingpolicies,clusterimagepolicies`). Notebook 05's
# ImageValidatingPolicies would answer before this notebook's policy, so remove every Kyverno policy
# (`kubectl delete imagevalidatingpolicy workshop-signed`, …). A ClusterImagePolicy may stay:
# policy-controller only looks at namespaces that opt in (notebook 07), and `default` does not.

# %%
workshop.clear_policies(lab, "kyverno")

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
# **What just happened.** Both pods are admitted, and Kyverno still says what it found, in the
# `Warning:` lines kubectl prints: the unsigned image failed verification, and — `verifyDigest` is
# still on while `mutateDigest` is off — neither image names a digest. Every `kyverno.io/v1`
# ClusterPolicy also earns a deprecation warning: Kyverno 1.19 steers new policies to the
# ImageValidatingPolicy of notebook 05.
#
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
# ## Exercise: rotate the key
#
# Your team is moving to a new key, `team.pub` (imported in notebook 01); while images signed with
# either key are around, the policy must accept both. Back in Enforce mode, add a second entry with
# `team.pub` to the attestor and create the signed pod: it is **denied**, because without `count`
# every entry of an attestor must verify. Then set `count: 1` on the attestor (any one entry is
# enough) and show the signed pod admitted and pinned again.

# %% solution
import copy

import yaml

workshop.write_policy("clusterpolicy", "clusterpolicy.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, action="Enforce", mutate_digest="true")
policy = yaml.safe_load(open("clusterpolicy.yaml"))
attestor = policy["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]
team = copy.deepcopy(attestor["entries"][0])
team["keys"]["publicKeys"] = open("team.pub").read().strip()
attestor["entries"].append(team)
lab.apply(policy)
print(lab.create(pod("rotation-both-keys", signed_image)))
attestor["count"] = 1
lab.apply(policy)
print(lab.create(pod("rotation-either-key", signed_image)).images[0])

# %% [markdown]
# ## Key points
# - `verifyImages` verifies in Kyverno's mutating webhook and pins tags to verified digests.
# - Enforce denies; Audit admits and reports — and needs `mutateDigest: false`.
# - PolicyReports (`wgpolicyk8s.io/v1alpha2`) hold the audit trail, one per resource.
# - An attestor's entries must all verify unless `count` says how many are enough (key rotation).
#
# Next: **07 · policy-controller ClusterImagePolicy**.
