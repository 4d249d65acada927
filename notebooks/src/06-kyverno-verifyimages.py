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
check.ready_for("06", lab)  # what this notebook uses from earlier ones; names the one to finish first
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
# ## ClusterPolicy is deprecated: the same rule, both ways
#
# Kyverno 1.17 marked `ClusterPolicy` (kyverno.io/v1) **deprecated, with removal planned for 1.20**;
# new image-verification policies should be ImageValidatingPolicies (notebook 05). You will still
# meet ClusterPolicies in most clusters and blog posts, so this notebook teaches them — next to
# their replacement. The two templates this workshop fills in, side by side:

# %%
print(workshop.side_by_side(workshop.policy_template("clusterpolicy"), workshop.policy_template("imagevalidatingpolicy"),
                            ("ClusterPolicy (kyverno.io/v1, deprecated)", "ImageValidatingPolicy (policies.kyverno.io/v1)")))

# %% [markdown]
# Line for line: `match` becomes `matchConstraints`; `imageReferences` becomes
# `matchImageReferences` (globs); the attestor's `keys.publicKeys` becomes `cosign.key.data`;
# `rekor.ignoreTlog` and `ctlog.ignoreSCT` become `ctlog.insecureIgnoreTlog` and `insecureIgnoreSCT`;
# `failureAction: Enforce` becomes `validationActions: [Deny]`; and where `verifyImages` decides
# by itself, the ImageValidatingPolicy says in CEL what must hold.

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

# %% [markdown]
# Apply it yourself, as `kubectl apply -f clusterpolicy.yaml` would (`labkit lab apply -f` on every
# backend; on native and kind, `kubectl` works in the terminal too):

# %%
!labkit lab apply -f clusterpolicy.yaml

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
# ### The same reports, as Policy Reporter shows them
#
# Teams rarely read PolicyReports with kubectl. [Policy Reporter](https://github.com/kyverno/policy-reporter),
# Kyverno's report UI, collects them into views: the **Dashboard** (per source, here *Kyverno*:
# results by status, per namespace and cluster-wide), the **Policy Dashboard** (each policy's
# pass/fail counts, grouped by category; a policy without a `policies.kyverno.io/category`
# annotation is filed under *Other*), a **policy's page** (its results per namespace and per
# resource, with Kyverno's message) and **result lists** you filter by namespace, kind, status and
# severity. The tabs below are labkit's copy of those views, in Policy Reporter's colours; their
# totals are the `result_counts` printed above. Pick the `fail` status in *Results*: that is the
# unsigned pod, with the reason Kyverno gave.

# %%
widgets.policy_reporter(reports)

# %% [markdown]
# ## Step 5: a private registry, the ClusterPolicy way
#
# The seed's workaround for private registries was `imageRegistryCredentials.secrets` in the
# `verifyImages` rule. Like the ImageValidatingPolicy's `credentials` (notebook 05), Kyverno reads
# that Secret **from its own namespace**: since 1.18 it also accepts `namespace/name` and the pod's
# `imagePullSecrets`, but it only watches Secrets in the `kyverno` namespace (and those its
# `--imagePullSecrets` flag names), so a Secret beside the pod is never found and the pull stays
# anonymous. A policy for the private registry, in Enforce mode, and a pod that carries the Secret:

# %%
import yaml

private = lab.private_registry
private_image = workshop.push_private_sample(lab)
private_policy = yaml.safe_load(open("clusterpolicy.yaml"))
private_policy["metadata"]["name"] = "private-verify-images"
rule = private_policy["spec"]["rules"][0]["verifyImages"][0]
rule.update(imageReferences=[f"{private.pod_host}/private/*"], failureAction="Enforce",
            imageRegistryCredentials={"secrets": ["cpol-regcred"]})
print(lab.apply(private_policy)[0])
lab.apply(private.pull_secret("cpol-regcred", "default"))  # beside the pod, where the kubelet reads it
private_pod = pod("private-cpol", private_image)
private_pod["spec"]["imagePullSecrets"] = [{"name": "cpol-regcred"}]
print(lab.create(private_pod))

# %% [markdown]
# `UNAUTHORIZED`: the Secret exists, in the pod's namespace, and Kyverno pulled anonymously anyway.
# The fix is the same as in notebook 05: the Secret in the `kyverno` namespace
# (`kubectl create secret docker-registry cpol-regcred -n kyverno …`):

# %%
lab.apply(private.pull_secret("cpol-regcred", "kyverno"))
print(lab.create(private_pod))
print(lab.delete(private_policy)[0])  # back to one policy for the checkpoint and the exercise

# %% [markdown]
# ## Checkpoint

# %%
check.verify_images(lab)

# %% [markdown]
# ## Exercise: rotate the key
#
# Your team is moving to a new key, `team.key` (the P-384 key imported in notebook 01); while images
# signed with either key are around, the policy must accept both. The cell below puts the policy
# back in Enforce mode and pushes a new image, `workshop/rotated:v1`, that you sign with `team.key`
# only. Then open `workshop/clusterpolicy.yaml` in the file browser and make both pods below admitted:
#
# 1. Add a second entry to the attestor with `team.pub` (copy the first entry, replace the key) and
#    apply the file (`!labkit lab apply -f clusterpolicy.yaml`). Both pods are **denied**: without
#    `count`, every entry of an attestor must verify.
# 2. Set `count: 1` on the attestor (any one entry is enough): the sample is admitted — and the
#    rotated image still denied. Read its message.
# 3. The team key is P-384 and cosign signed SHA-384 with it (notebook 01); Kyverno verifies with
#    `signatureAlgorithm`, default `sha256`. Add `signatureAlgorithm: sha384` to the team entry's
#    `keys:` (in Kyverno 1.19 the entry-level field is overwritten by the `keys` one for key
#    attestors, so it must go under `keys`). Apply, and run the check.

# %%
workshop.write_policy("clusterpolicy", "clusterpolicy.yaml", public_key="cosign.pub",
                      registry=lab.registry.pod_host, action="Enforce", mutate_digest="true")
lab.apply("clusterpolicy.yaml")
rotated = workshop.run(f"labkit build hello-app -t {lab.registry.host}/workshop/rotated:v1 --push").stdout.strip()
workshop.run(f"labkit sign --key team.key --tlog-upload=false {rotated}")
rotated_image = f"{lab.registry.pod_host}/workshop/rotated:v1"

# %% solution
import copy

import yaml

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
print(lab.create(pod("rotation-team-key", rotated_image)))
team["keys"]["signatureAlgorithm"] = "sha384"
yaml.safe_dump(policy, open("clusterpolicy.yaml", "w"), sort_keys=False)
print(lab.apply("clusterpolicy.yaml")[0])
print(lab.create(pod("rotation-team-key-sha384", rotated_image)).images[0])

# %%
check.exercise_06(lab)

# %% [markdown]
# ## Key points
# - `verifyImages` verifies in Kyverno's mutating webhook and pins tags to verified digests.
# - Enforce denies; Audit admits and reports — and needs `mutateDigest: false`.
# - PolicyReports (`wgpolicyk8s.io/v1alpha2`) hold the audit trail, one per resource.
# - An attestor's entries must all verify unless `count` says how many are enough (key rotation).
# - A P-384 key signs SHA-384: tell Kyverno with `keys.signatureAlgorithm: sha384`.
# - ClusterPolicy is deprecated since Kyverno 1.17 (removal planned for 1.20): write new policies as
#   ImageValidatingPolicies.
#
# Next: **07 · policy-controller ClusterImagePolicy**.
