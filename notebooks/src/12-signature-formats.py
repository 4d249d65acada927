# %% [markdown]
# # 12 · One image, three signatures: what each engine can see
#
# **You will**
# - sign one image keyless three ways: cosign v2's `.sig`, cosign v3's default (a Sigstore bundle
#   attached as an OCI referrer), and cosign v3 with the two flags that keep the old format,
# - see where each signature lives,
# - ask each engine — Kyverno's ClusterPolicy, Kyverno's ImageValidatingPolicy, policy-controller —
#   about each one, and fill in the table,
# - compare your table with what the real engines answered.
#
# Notebook 09 warned that cosign v3 changed what `cosign sign` writes. Here you measure what that
# change does to each engine.

# %%
from labkit import check, keyless_lab, workshop

lab = workshop.start(sigstore=True)  # also: labkit lab up --sigstore
check.ready_for("12", lab)
images = keyless_lab.format_images(lab)  # one repository per engine and format, the same image in each

# %% [markdown]
# ## Step 1: three signatures
#
# The same identity (alice), the same Sigstore, three formats. labkit's flags are cosign's:
# `--new-bundle-format` is cosign v3's default, and `--new-bundle-format=false
# --use-signing-config=false` is how cosign v3 is told to write what cosign v2 writes.

# %%
for fmt in keyless_lab.FORMATS:
    print(f"# {fmt}")
    keyless_lab.sign_format(lab, images["kyverno-cpol", fmt], fmt)
    for engine in keyless_lab.ENGINES[1:]:
        keyless_lab.sign_format(lab, images[engine, fmt], fmt, show=False)
    print()

# %% [markdown]
# ## Step 2: where each signature lives
#
# The first and the third wrote a `sha256-<digest>.sig` image next to the signed one; cosign v3's
# default wrote none: its bundle is a manifest whose `subject` is the image, found through the
# registry's referrers API. `labkit triangulate` names the `.sig` image; `labkit digest` says
# whether it exists:

# %%
for fmt in keyless_lab.FORMATS:
    sig = workshop.run(f"labkit triangulate {images['kyverno-cpol', fmt]}", show=False).stdout.strip()
    found = workshop.run(f"labkit digest {sig.replace(lab.registry.pod_host, lab.registry.host, 1)}", show=False)
    print(f"{fmt:>24}: .sig image {'present' if found.ok else 'absent'}")

# %% [markdown]
# ## Step 3: one keyless policy per engine
#
# Each engine trusts alice, from the lab's Sigstore, for its own repositories (notebook 11 showed
# the ClusterPolicy; the ImageValidatingPolicy finds the trust root through the lab's TUF
# repository, policy-controller through a `TrustRoot`). policy-controller checks only opted-in
# namespaces, so its pods go to `formats`.

# %%
import yaml

keyless_lab.fresh_tuf_client(lab)  # Kyverno's TUF client keeps the first repository it is given
lab.label_namespace("formats", {"policy.sigstore.dev/include": "true"})
with open("formats-policies.yaml", "w") as out:
    yaml.safe_dump_all(keyless_lab.format_policies(lab), out, sort_keys=False)
for result in lab.apply("formats-policies.yaml"):
    print(result)

# %% [markdown]
# ## Step 4: ask the engines
#
# Each line is a pod created with a server dry run: the engine decides, nothing is kept.

# %%
for fmt in keyless_lab.FORMATS:
    for engine in keyless_lab.ENGINES:
        print(f"{fmt:>24} × {engine:<18} {keyless_lab.ask(lab, images[engine, fmt], engine)}")

# %% [markdown]
# ## Exercise
#
# Open `workshop/formats.yaml` in the file browser and fill in each cell with `admitted` or
# `denied`, from the answers above. Then run the check: it compares your table with what the
# engines answer here and with what the real Kyverno v1.19.1 and policy-controller v0.13.1
# answered when the project recorded them.

# %%
keyless_lab.write_table()

# %% solution
table = {fmt: {engine: keyless_lab.ask(lab, images[engine, fmt], engine).split(":")[0]
               for engine in keyless_lab.ENGINES} for fmt in keyless_lab.FORMATS}
yaml.safe_dump(table, open("formats.yaml", "w"), sort_keys=False)

# %%
check.exercise_12(lab)

# %% [markdown]
# ## Key points
# - cosign v3 signs into a Sigstore bundle attached as an OCI referrer; it writes no `.sig` image.
# - Kyverno's ClusterPolicy (`type: Cosign`) and policy-controller read `.sig` images: they deny a
#   v3-signed image with "no signatures found". Kyverno's ImageValidatingPolicy reads both.
# - Keep the old format with `--new-bundle-format=false --use-signing-config=false`, or move your
#   policies to an engine that reads bundles — before upgrading cosign in CI (notebook 09).
