# %% [markdown]
# # 08 · The attack lab
#
# **You will**
# - play an attacker who can push to the registry (a leaked CI token) but holds neither the
#   workshop key nor the right to change policies,
# - try eight attacks against all three engines at once, and read each engine's own answer,
# - find the ones that get through, and close one of them yourself.

# %%
from labkit import attack_lab, check, workshop

lab = workshop.start()  # the lab (LAB_BACKEND), cd to the workshop directory, the key password
check.ready_for("08", lab)  # what this notebook uses from earlier ones; names the one to finish first
registry, pods = lab.registry.host, lab.registry.pod_host  # where you push; what pods name

# %% [markdown]
# ## Step 0: three guards, one per engine
#
# Each engine guards a namespace of its own, so one pod tried in the three namespaces gets three
# independent answers (one engine's denial never hides another's):
#
# | namespace | engine | how the policy is scoped |
# |---|---|---|
# | `attack-ivp` | Kyverno ImageValidatingPolicy | `matchConstraints.namespaceSelector` |
# | `attack-cpol` | Kyverno ClusterPolicy `verifyImages` | `match.any[].resources.namespaces` |
# | `attack-pc` | policy-controller ClusterImagePolicy | only this namespace opts in |
#
# Each guard requires your workshop key for images under `attack/` in the lab's registry (and on
# one more registry address, used in attack 8). Earlier notebooks' policies go first.

# %%
workshop.clear_policies(lab, "kyverno")
workshop.clear_policies(lab, "policy-controller")
attack_lab.open_namespaces(lab)
for path in attack_lab.write_guards(lab, "cosign.pub"):
    for result in lab.apply(path):
        print(result)
print(open("attack-cip.yaml").read())

# %% [markdown]
# ## Step 1: the application, and the attacker's image
#
# The team builds and signs `attack/app:v1` by digest. The attacker builds another image (the same
# app with one line changed) and pushes it to the same repository under another tag.

# %%
app = attack_lab.variant("team-app", "release 1")
evil = attack_lab.variant("evil-app", "a cryptominer would go here")
good_digest = workshop.run(f"labkit build team-app -t {registry}/attack/app:v1 --push").stdout.strip().split("@")[1]
workshop.run(f"labkit sign --key cosign.key --tlog-upload=false {registry}/attack/app@{good_digest}")
evil_digest = workshop.run(f"labkit build evil-app -t {registry}/attack/app:evil --push").stdout.strip().split("@")[1]

# %% [markdown]
# `attack_lab.attempt(lab, IMAGE)` creates a pod running IMAGE in each namespace as a server dry
# run (`kubectl run … --dry-run=server`: admission decides, nothing is kept) and prints each
# engine's decision with its own last words. First the baseline: the signed digest passes
# everywhere, the attacker's digest fails everywhere.

# %%
print(attack_lab.attempt(lab, f"{pods}/attack/app@{good_digest}"))
print(attack_lab.attempt(lab, f"{pods}/attack/app@{evil_digest}"))

# %% [markdown]
# ## Attack 1: tag hijack
#
# Deployments say `attack/app:v1`. The attacker pushes their image **as `v1`**: the tag now names
# other content (the story notebook 00 started with).

# %%
workshop.run(f"labkit build evil-app -t {registry}/attack/app:v1 --push")
print(attack_lab.attempt(lab, f"{pods}/attack/app:v1"))

# %% [markdown]
# **Stopped, by all three.** Every engine resolves the tag to the digest it points to *now* and
# checks the signature of that digest. The signature is of content, not of a name, so moving a name
# gains nothing. (Kyverno then pins admitted pods to the digest it verified: notebook 06.)
#
# ## Attack 2: replay a signature onto another digest
#
# A cosign signature lives at `sha256-<digest>.sig`. The attacker copies the team's valid signature
# to the tag for their own digest (`crane cp …:sha256-GOOD.sig …:sha256-EVIL.sig`):

# %%
good_sig = f"{registry}/attack/app:{good_digest.replace(':', '-')}.sig"
attack_lab.copy(good_sig, f"{registry}/attack/app:{evil_digest.replace(':', '-')}.sig")
cosign = workshop.tool("cosign")  # verify it yourself: the real cosign when installed, else labkit
!{cosign} verify --key cosign.pub --insecure-ignore-tlog {registry}/attack/app@{evil_digest}
print(attack_lab.attempt(lab, f"{pods}/attack/app@{evil_digest}"))

# %% [markdown]
# **Stopped.** The signature is valid, but over a payload that names the *team's* digest
# (`critical.image.docker-manifest-digest`); every verifier compares it with the digest being
# admitted, and they differ.
#
# ## Attack 3: sign with the attacker's own key
#
# Anyone can make a key pair and sign anything. The attacker signs their digest:

# %%
workshop.run("labkit generate-key-pair --output-key-prefix attacker")
workshop.run(f"labkit sign --key attacker.key --tlog-upload=false {registry}/attack/app@{evil_digest}")
print(attack_lab.attempt(lab, f"{pods}/attack/app@{evil_digest}"))

# %% [markdown]
# **Stopped.** A signature only counts if the key *in the policy* verifies it. That moves the
# question to who may change policies: in a real cluster, guard `clusterpolicies`,
# `imagevalidatingpolicies` and `clusterimagepolicies` with RBAC as you guard the key.
#
# ## Attack 4: the `..` name trick
#
# The guards cover `attack/*`. A name with a `..` segment still *matches* that glob as a string,
# but is it an image name? Try it alone, then beside a second container running the attacker's
# image by its plain name:

# %%
dotted = f"{pods}/attack/../attack/app@{evil_digest}"
print(attack_lab.attempt(lab, dotted))
print(attack_lab.attempt(lab, dotted, f"{pods}/attack/app@{evil_digest}"))

# %% [markdown]
# **The ClusterPolicy admits both pods, and the attacker's plain image with the second.** Kyverno
# collects a pod's images into its policy context; one name it cannot parse (`..` is not a valid
# path component) makes that collection fail as a whole, and ClusterPolicy rules then see **no
# image at all**: nothing is verified, so nothing fails. That is Kyverno 1.19.1's behaviour, the
# version the native lab runs. On a real node the kubelet refuses the dotted name
# (`InvalidImageName`) but starts the other container.
#
# The other two stop it: the ImageValidatingPolicy parses every image before it pins digests and
# refuses the pod (`invalid reference format`); policy-controller asks the registry for the
# dotted name, and the registry refuses it (`NAME_INVALID`). Defence in depth is not a slogan here:
# a second engine, or a rule that every image name parses, closes what one engine leaves open.
#
# ## Attack 5: a sibling repository the glob does not cover
#
# The guards say `attack/*`. The attacker pushes to `attack-staging/app`, right next to it:

# %%
workshop.run(f"labkit build evil-app -t {registry}/attack-staging/app:v1 --push", show=False)
print(attack_lab.attempt(lab, f"{pods}/attack-staging/app@{evil_digest}"))

# %% [markdown]
# **Both Kyverno policies admit it, unchecked.** Kyverno verifies only images a rule's glob matches;
# everything else passes. policy-controller denies it: in an opted-in namespace, an image that no
# ClusterImagePolicy covers is refused (`no matching policies`, notebook 07). You close this gap in
# the exercise.
#
# ## Attack 6: the same digest in another repository
#
# Signatures are looked up next to the image. Copy the team's signed image to `attack/mirror`
# (same content, same digest) — first without its signature, then with it:

# %%
attack_lab.copy(f"{registry}/attack/app@{good_digest}", f"{registry}/attack/mirror:v1")
print(attack_lab.attempt(lab, f"{pods}/attack/mirror@{good_digest}"))
attack_lab.copy(good_sig, f"{registry}/attack/mirror:{good_digest.replace(':', '-')}.sig")
print(attack_lab.attempt(lab, f"{pods}/attack/mirror@{good_digest}"))

# %% [markdown]
# **Without its signature the copy is refused everywhere; with it, admitted everywhere.** Every
# engine looks for `sha256-<digest>.sig` in the image's own repository. And a cosign signature
# binds the *digest*: the payload's `docker-reference` still says `attack/app`, but no engine
# compares it with the pod's image. That is by design (mirrors must keep working); deciding
# *where* images may come from is the glob's job.
#
# ## Attack 7: signed, in cosign v3's format
#
# Not an attacker this time: the team upgrades to cosign v3, whose `cosign sign` writes a Sigstore
# bundle attached as an OCI *referrer* instead of a `.sig` image. They sign release 2 that way
# (the real command needs `--use-signing-config=false` for `--tlog-upload=false`):

# %%
attack_lab.variant("team-app-2", "release 2")
v2_digest = workshop.run(f"labkit build team-app-2 -t {registry}/attack/app:v2 --push").stdout.strip().split("@")[1]
workshop.run("labkit sign --key cosign.key --use-signing-config=false --tlog-upload=false --new-bundle-format "
             f"{registry}/attack/app@{v2_digest}")
workshop.run(f"labkit verify --key cosign.pub --insecure-ignore-tlog {registry}/attack/app@{v2_digest}")
print(attack_lab.attempt(lab, f"{pods}/attack/app@{v2_digest}"))

# %% [markdown]
# **Signed, and denied by two engines of three.** Kyverno's ImageValidatingPolicy looks for cosign
# v3 bundles first (since Kyverno 1.17) and verifies this one with the key. The ClusterPolicy
# (`type: Cosign`) and policy-controller's key authority read `.sig` images only, and so does
# `labkit verify`, like cosign v2's `verify` (cosign v3's finds the bundle). Before upgrading the
# signer, upgrade the verifiers, or sign with `--new-bundle-format=false --use-signing-config=false`.
#
# ## Attack 8: `failurePolicy: Ignore` fails open
#
# The guards also cover `attack/` on `127.0.0.1:9`, where connections are refused (a registry that
# is down). First with `failurePolicy: Fail`, then with the Kyverno guards set to `Ignore` (as the
# seed's ImageValidatingPolicy had it):

# %%
refused = f"{attack_lab.UNREACHABLE}/attack/app@{evil_digest}"
print(attack_lab.attempt(lab, refused))
for path in attack_lab.write_guards(lab, "cosign.pub", failure_policy="Ignore"):
    lab.apply(path)
print(attack_lab.attempt(lab, refused))

# %% [markdown]
# **Denied everywhere, both times.** An engine that *answers* "I could not check" denies, whatever
# `failurePolicy` says: Kyverno reports an error for the image, and an error blocks (with `Ignore`,
# the ClusterPolicy's validating webhook then finds the image unverified). `failurePolicy` tells the
# API server what to do when the webhook does **not** answer: it is down, or too slow.
#
# A registry that *hangs* makes it too slow. `attack_lab.Tarpit()` accepts connections and never
# answers; guard it too, still with `Ignore`, and try the attacker's digest there (each engine now
# runs into its webhook's timeout):

# %%
tarpit = attack_lab.Tarpit()
for path in attack_lab.write_guards(lab, "cosign.pub", failure_policy="Ignore", registries=(pods, tarpit.host)):
    lab.apply(path)
print(attack_lab.attempt(lab, f"{tarpit.host}/attack/app@{evil_digest}"))

# %% [markdown]
# **The ImageValidatingPolicy admits the attacker's image.** Kyverno was still waiting for the
# registry when the API server's 10 s ran out, and `Ignore` told the API server to go on without
# it. The ClusterPolicy holds: its validating webhook needs no registry, and it finds no record of
# a verification (`required: true`, the default). policy-controller's webhook is always `Fail`.
# `Ignore` is for policies whose outage must not stop a cluster, never for a security control.
#
# Put `Fail` back (and stop the tarpit) before the checkpoint:

# %%
for path in attack_lab.write_guards(lab, "cosign.pub"):
    lab.apply(path)
tarpit.close()

# %% [markdown]
# ## Checkpoint

# %%
check.attacks(lab)

# %% [markdown]
# ## Exercise: close the sibling gap
#
# Attack 5 got through Kyverno. Open `workshop/attack-ivp.yaml` and `workshop/attack-cpol.yaml` in
# the file browser and change them so that **every** image in the lab's registry must be signed;
# save, apply both (`!labkit lab apply -f attack-ivp.yaml`, then the other), and run the check.
# (What does policy-controller need? Nothing: read attack 5 again.)

# %% solution
for name in ("attack-ivp.yaml", "attack-cpol.yaml"):
    text = open(name).read().replace(f"{pods}/attack/*", f"{pods}/*")
    open(name, "w").write(text)
    print(lab.apply(name)[0])

# %%
check.exercise_08(lab)

# %% [markdown]
# ## Key points
# - Signatures bind **digests**: moving a tag, replaying a signature onto other content or signing
#   with another key all fail, on every engine.
# - The policy's **glob decides what is checked**. Kyverno admits what no rule matches;
#   policy-controller denies what no policy covers.
# - A name an engine cannot parse is a gap: Kyverno's ClusterPolicy then checks none of the pod's
#   images. Two engines, or a rule that names must parse, close it.
# - A signature travels with its digest to any repository; and only the formats an engine reads
#   count (cosign v3 bundles: ImageValidatingPolicy only).
# - `failurePolicy: Ignore` turns a webhook that does not answer in time into "admitted".
#
# Next: **09 · signing in CI**.
