# %% [markdown]
# # 11 · Keyless: trust an identity, not a key
#
# **You will**
# - get an OIDC token for a workshop identity, and read what it claims,
# - sign an image with no key at all: Fulcio certifies a fresh key for ten minutes,
# - find the signature in the transparency log (Rekor),
# - verify *by identity*, and watch another identity fail,
# - make Kyverno admit only images signed by the identities you trust.
#
# The lab runs its own Sigstore — an OIDC issuer, Fulcio, a CT log and Rekor, the same programs as
# the public instance — on this machine: nothing here needs the internet. Against the public
# instance the commands are the same, without the URLs.

# %%
from labkit import check, keyless_lab, workshop
from labkit.lab import pod

lab = workshop.start(sigstore=True)  # also: labkit lab up --sigstore
check.ready_for("11", lab)
sigstore = lab.sigstore
issuer = sigstore.urls.oidc_issuer
alice, bob = "alice@example.com", "bob@example.com"
images = keyless_lab.images(lab)  # one repository per signer, the same sample image in each
for who, image in images.items():
    print(who, "→", image)

# %% [markdown]
# ## Step 1: an identity
#
# Keyless signing starts with a login. In CI the platform hands the job a token
# (`id-token: write`, notebook 09); here the lab's issuer plays the identity provider — and signs
# a token for any email it is asked for, which is why it only ever listens on this machine.
# `labkit lab token EMAIL` prints one; what it claims:

# %%
token = sigstore.token(alice)
keyless_lab.show_claims(token)  # the token itself is a credential: never printed

# %% [markdown]
# `iss` is the issuer, `email` the identity Fulcio will certify, `aud: sigstore` says the token is
# meant for Sigstore. The token expires; so will the certificate.

# %% [markdown]
# ## Step 2: sign with no key
#
# `cosign sign` without `--key`: cosign makes a key pair in memory, sends the public key and the
# token to Fulcio, gets back a certificate binding that key to `alice@example.com` for ten minutes,
# signs, uploads the signature to Rekor, and throws the private key away. In a terminal
# (`eval "$(labkit lab env)"` first):
#
# ```
# cosign sign -y --identity-token "$(labkit lab token alice@example.com)" \
#   --fulcio-url "$LABKIT_FULCIO_URL" --rekor-url "$LABKIT_REKOR_URL" IMAGE
# ```

# %%
signed = keyless_lab.sign(lab, images["alice"], alice)

# %% [markdown]
# ## Step 3: what vouches for the signature
#
# The `.sig` layer now carries, beside the signature, Fulcio's certificate and Rekor's receipt. The
# certificate names the identity and the issuer, and it is valid for ten minutes only:

# %%
found = keyless_lab.signature(lab, images["alice"], alice)
print(found.summary())

# %% [markdown]
# Ten minutes is not a problem for verifying next year: Rekor's receipt (its *signed entry
# timestamp*) proves the signature was made while the certificate was valid. The log entry itself,
# as anyone can fetch it from Rekor:

# %%
print(keyless_lab.rekor_entry(sigstore, found.log_index))

# %% [markdown]
# ## Step 4: verify by identity
#
# There is no public key to give `cosign verify`. You name who must have signed, and which issuer
# must have vouched for them — both, always:

# %%
keyless_lab.verify(lab, images["alice"], alice)

# %% [markdown]
# The same image, expecting bob: the certificate says alice, so verification fails — in cosign's words.

# %%
keyless_lab.verify(lab, images["alice"], bob)

# %% [markdown]
# ## Step 5: enforce by identity
#
# A Kyverno `ClusterPolicy` with a `keyless` attestor trusts an identity: `subject` and `issuer`,
# with the lab's Fulcio root (`roots`), Rekor (`rekor.url`, `rekor.pubkey`) and CT log key
# (`ctlog.pubkey`) — against the public instance you would leave those three out. Sign bob's and a
# lookalike's images too, write the policy for alice, and try all three:

# %%
keyless_lab.sign(lab, images["bob"], bob, show=False)
keyless_lab.sign(lab, images["lookalike"], keyless_lab.SIGNERS["lookalike"], show=False)
keyless_lab.write_policy(lab, "keyless-policy.yaml", subject_regexp="alice@example.com")
print(keyless_lab.show_policy("keyless-policy.yaml"))
for result in lab.apply("keyless-policy.yaml"):
    print(result)
for who, image in images.items():
    print(f"{who:>9}:", lab.create(pod(f"keyless-{who}", image), dry_run=True))

# %% [markdown]
# Alice's image is admitted, bob's denied. But the lookalike — signed by
# `alice@example.com.evil.test`, an address anyone can register — is admitted too: `subjectRegExp`
# matches *anywhere* in the identity (Go's `regexp.MatchString`), and the pattern's dots match any
# character. A regexp identity must be anchored (`^…$`), or better, exact (`subject:`).

# %% [markdown]
# ## Checkpoint

# %%
check.keyless(lab)

# %% [markdown]
# ## Exercise
#
# Bob joins the release team. Edit `workshop/keyless-policy.yaml` in the file browser so that
# Kyverno admits images signed by alice **or** bob — each as an exact `subject` with the lab's
# `issuer` (a second entry under `attestors[0].entries`, with `count: 1` on the attestor set) —
# and no longer admits the lookalike. Apply it (`!labkit lab apply -f keyless-policy.yaml`), then
# run the check.

# %% solution
import yaml

policy = yaml.safe_load(open("keyless-policy.yaml"))
attestors = policy["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]
entry = attestors["entries"][0]["keyless"]
del entry["subjectRegExp"]
attestors["count"] = 1
attestors["entries"] = [{"keyless": {**entry, "subject": who}} for who in (alice, bob)]
yaml.safe_dump(policy, open("keyless-policy.yaml", "w"), sort_keys=False)
!labkit lab apply -f keyless-policy.yaml

# %%
check.exercise_11(lab)

# %% [markdown]
# ## Key points
# - Keyless signing replaces a long-lived key with a login: an OIDC token, a ten-minute Fulcio
#   certificate naming the identity, and a Rekor entry proving when the signature was made.
# - Verification and policies name **who** (the certificate's identity) and **which issuer**
#   vouched for them — always both.
# - Pin identities exactly; an unanchored regexp trusts lookalikes.
# - The lab's Sigstore is offline and yours; the public one works the same way, with its URLs and
#   trust root built into cosign.
